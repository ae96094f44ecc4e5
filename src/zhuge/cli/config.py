"""The command line's config file: where the server is, which token to use, and defaults for
commands' options, so that a laptop's ``zhuge`` needs no exports.

It is ``$ZHUGE_CONFIG``, else ``$XDG_CONFIG_HOME/zhuge/config.toml``, else
``~/.config/zhuge/config.toml``; none is fine. Environment variables override it, and options
given on the command line override both::

    url = "http://gpu-box:8470"          # ZHUGE_URL
    token_file = "~/.config/zhuge/token" # its content is the token, unless ZHUGE_TOKEN is set
    home = "~/zhuge"                     # ZHUGE_HOME (zhuge up, the embedded platform)

    [defaults.forecast]                  # zhuge forecast --freq 1h --horizon 48h
    freq = "1h"
    horizon = "48h"

    [defaults.jobs.ls]                   # a subcommand: zhuge jobs ls --state running
    state = "running"

Defaults are keyed by option name (``timestamp-unit`` or ``timestamp_unit``); an unknown
command or option is refused, naming the file, so a typo does not silently do nothing.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zhuge.errors import ConfigError

__all__ = ["UserConfig", "apply_config", "config_path", "default_map", "load_config"]

KEYS = {"url": "ZHUGE_URL", "home": "ZHUGE_HOME"}  # key -> the variable that overrides it


@dataclass(frozen=True)
class UserConfig:
    path: Path | None = None
    url: str | None = None
    token_file: Path | None = None
    home: Path | None = None
    defaults: dict[str, Any] = field(default_factory=dict)


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("ZHUGE_CONFIG"):
        return Path(env["ZHUGE_CONFIG"]).expanduser()
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "zhuge" / "config.toml"


def load_config(env: Mapping[str, str] | None = None) -> UserConfig:
    """The config file's settings; an empty config when there is none (a ZHUGE_CONFIG that
    names no file is an error: it was meant)."""
    env = os.environ if env is None else env
    path = config_path(env)
    if not path.is_file():
        if env.get("ZHUGE_CONFIG"):
            raise ConfigError(f"ZHUGE_CONFIG={env['ZHUGE_CONFIG']}: no such file")
        return UserConfig()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    unknown = sorted(set(data) - {"url", "token_file", "home", "defaults"})
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key(s) {unknown}; known: url, token_file, home, "
            "[defaults.COMMAND]"
        )
    for key in ("url", "token_file", "home"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"config file {path}: {key} must be a string")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"config file {path}: defaults must be tables, [defaults.COMMAND]")
    home = data.get("home")
    token_file = data.get("token_file")
    return UserConfig(
        path=path,
        url=data.get("url"),
        token_file=Path(token_file).expanduser() if token_file else None,
        home=Path(home).expanduser() if home else None,
        defaults=defaults,
    )


def apply_config(config: UserConfig, env: MutableMapping[str, str]) -> None:
    """Fill ``env`` from the config where it says nothing itself (environment first)."""
    if config.url and not env.get("ZHUGE_URL"):
        env["ZHUGE_URL"] = config.url
    if config.home and not env.get("ZHUGE_HOME"):
        env["ZHUGE_HOME"] = str(config.home)
    if config.token_file and not env.get("ZHUGE_TOKEN"):
        try:
            token = config.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"config file {config.path}: token_file {config.token_file}: {exc.strerror}"
            ) from None
        if token:
            env["ZHUGE_TOKEN"] = token


def default_map(config: UserConfig, command: Any) -> dict[str, Any]:
    """Click's ``default_map`` for ``command`` (the ``zhuge`` group) from the config's
    ``[defaults...]`` tables: option names turned into the parameters they fill."""
    return _defaults_for(command, config.defaults, "defaults", config.path)


def _defaults_for(
    command: Any, table: Mapping[str, Any], where: str, path: Path | None
) -> dict[str, Any]:
    """(Typer's Click commands, duck-typed: a group has ``commands``, an option is a
    parameter whose ``param_type_name`` is ``option``.)"""
    out: dict[str, Any] = {}
    if hasattr(command, "commands"):
        for name, value in table.items():
            sub = command.commands.get(name)
            if sub is None or not isinstance(value, dict):
                known = ", ".join(sorted(command.commands))
                raise ConfigError(
                    f"config file {path}: [{where}.{name}] is no command (commands: {known})"
                )
            out[name] = _defaults_for(sub, value, f"{where}.{name}", path)
        return out
    by_option = {}
    for param in command.params:
        if param.param_type_name == "option":
            for opt in param.opts + param.secondary_opts:
                by_option[opt.lstrip("-").replace("-", "_")] = param.name
    for key, value in table.items():
        name = by_option.get(key.replace("-", "_"))
        if name is None:
            known = ", ".join(sorted(k.replace("_", "-") for k in by_option))
            raise ConfigError(f"config file {path}: [{where}] has no option {key!r} ({known})")
        out[name] = value
    return out
