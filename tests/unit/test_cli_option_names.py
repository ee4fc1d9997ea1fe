"""One option name, one meaning, across every `tooling` command: the same help text wherever a name is
used, or an entry below saying why the words differ while the meaning is the same. And one name per
directory: two names that default to the same directory under the state root are one thing named twice
(as --output-dir and --runs-dir once were)."""

from __future__ import annotations

import re
from collections import defaultdict

from tests.unit.test_cli_help import _leaf_commands

# Option name -> why its help is worded per command though it means one thing.
SAME_MEANING_OWN_WORDS: dict[str, str] = {
    "--phase": "the plan's phase; the help says what the command does with it",
    "-p": "short for --phase",
    "--inventory": "an inventory directory; status/stop/self-check default to the latest deployment's, "
    "sandbox commands say where they write the sandbox's",
    "-i": "short for --inventory",
    "--criteria": "the site criteria file; report points at gate's description",
    "--prometheus": "the Prometheus base URL; the help says what the command reads from it",
    "--profile": "the verification profile; verify-node lists its default",
    "--local": "run on this machine; the help says what runs",
    "--no-local": "the off side of --local",
    "--restart": "replace an active run; sweep says which of its trials does",
    "--no-restart": "the off side of --restart",
    "--skip-provision": "launch without site.yml; soak says it applies on a cluster",
    "--no-skip-provision": "the off side of --skip-provision",
    "--skip-verify": "launch without the pre-flight checks; soak says it applies on a cluster",
    "--no-skip-verify": "the off side of --skip-verify",
    "--resume": "the id of an interrupted soak, sweep or local rehearsal to finish",
    "--run": "a run directory; gate and report default to the newest run, doctor reads a local run's "
    "status/ and logs/",
    "--run-id": "the id a new run gets; soak's run shares the soak's id",
    "--set": "a trainer setting; sweep applies it to every trial",
    "--steps": "training steps of the run the command starts",
    "--timeout": "seconds to wait for what the command waits on",
    "--yes": "do without asking what the command would ask first; deploy and sweep say which of their "
    "actions asks",
    "-y": "short for --yes",
}

_HOME_DEFAULT = re.compile(r"default: (<home>/[\w-]+)")


def _helps_by_option() -> dict[str, dict[str, str]]:
    """option name -> {command name: its help}."""
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for name, command in _leaf_commands().items():
        for param in command.params:
            for option in (*param.opts, *param.secondary_opts):
                if option.startswith("-"):
                    found[option][name] = param.help or ""
    return found


def test_each_option_name_has_one_help_or_a_reason() -> None:
    clashes = {
        option: helps
        for option, helps in _helps_by_option().items()
        if len(set(helps.values())) > 1 and option not in SAME_MEANING_OWN_WORDS
    }
    assert not clashes, clashes


def test_the_reasons_still_apply() -> None:
    helps = _helps_by_option()
    stale = [option for option in SAME_MEANING_OWN_WORDS if option not in helps]
    assert not stale, f"no command has {stale} any more: drop them from SAME_MEANING_OWN_WORDS"


def test_each_state_directory_has_one_name() -> None:
    names: dict[str, set[str]] = defaultdict(set)
    for option, helps in _helps_by_option().items():
        for help_text in helps.values():
            for directory in _HOME_DEFAULT.findall(help_text):
                names[directory].add(option)
    assert names["<home>/runs"] == {"--runs-dir"}, names  # the directory of the issue: the test must see it
    twice = {directory: options for directory, options in names.items() if len(options) > 1}
    assert not twice, twice
