"""Pure machine-learning algorithms: forecasting, clustering, preprocessing.

Nothing here imports the platform layers (jobs, api, cli).
"""
