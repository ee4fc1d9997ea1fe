"""Which inventory plugins `ansible-inventory --list` tries when tooling lists an inventory.

Ansible tries its `auto` plugin before `yaml` on every .yml/.yaml file. `auto` only handles a file whose
top level names a `plugin`; for any other file it parses the whole file in vain, and `yaml` parses it
again: a quarter of a second of the listing at 1,024 hosts. So where no such file of the inventory
mentions `plugin` at all (nor is vaulted), and nobody chose the plugins (the environment variable or
ansible.cfg's key Ansible reads for that), the listing leaves `auto` out of Ansible's own default list: it
can only have failed on those files, and the listing is the same.
"""

from __future__ import annotations

import configparser
import functools
import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

import yaml

from tooling.vault import VAULT_HEADER

AUTO = "auto"
SETTING = "INVENTORY_ENABLED"  # Ansible's name for the setting (lib/ansible/config/base.yml)
AUTO_SUFFIXES = (".yml", ".yaml")  # the files `auto` looks at (its verify_file)


@functools.cache
def _definition() -> tuple[str, str, str, list[str]]:
    """Ansible's own definition of the setting: environment variable, ini section and key, default."""
    spec = importlib.util.find_spec("ansible")  # finds the package without importing it (half a second)
    if spec is None or spec.origin is None:
        raise LookupError("ansible is not installed")
    base = Path(spec.origin).parent / "config" / "base.yml"
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    entry = yaml.load(base.read_text(encoding="utf-8"), Loader=loader)[SETTING]
    (ini,) = entry["ini"]
    (env,) = entry["env"]
    return env["name"], ini["section"], ini["key"], list(entry["default"])


def _chosen_in(config: Path, section: str, key: str) -> bool:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(config, encoding="utf-8")
    except configparser.Error:
        return True  # unreadable here: leave Ansible's own reading of it alone
    return parser.has_option(section, key)


def may_configure_a_plugin(file: Path) -> bool:
    """Whether an inventory source could be a plugin's configuration (which `auto` reads) rather than hosts
    and groups: a YAML file that mentions `plugin` anywhere, or is vaulted. Errs on the side of yes."""
    if file.suffix not in AUTO_SUFFIXES:
        return False
    text = file.read_text(encoding="utf-8", errors="replace")
    return "plugin" in text or text.lstrip().startswith(VAULT_HEADER.decode())


def listing_environment(sources: Iterable[Path], config: Path) -> dict[str, str]:
    """What to add to ansible-inventory's environment: the default plugins less `auto`, or nothing when
    `auto` may be needed or the plugins are someone's choice."""
    try:
        env_name, section, key, default = _definition()
    except (LookupError, OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return {}
    if env_name in os.environ or _chosen_in(config, section, key) or AUTO not in default:
        return {}
    if any(may_configure_a_plugin(file) for file in sources):
        return {}
    return {env_name: ",".join(name for name in default if name != AUTO)}
