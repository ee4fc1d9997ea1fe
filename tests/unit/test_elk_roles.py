"""ELK and Filebeat roles, checked without Elastic's packages (they cannot be installed here).

- every template of roles elasticsearch, logstash, kibana and filebeat is rendered by Ansible from the roles'
  defaults (and a variant with TLS, custom paths and vault passwords, and one with the beats link allowed
  to be plain text); the YAML ones parse;
- Elasticsearch's security settings are on, no password is in clear outside the services' 0600 environment
  files, and the configuration files refer to it only as ${VAR} defined there;
- the Logstash pipeline is parsed by a small structural reader: input/filter/output, balanced braces, a beats
  input on the configured port with TLS unless logstash_beats_allow_plaintext (Filebeat's output following
  it), an elasticsearch output with TLS and the CA path;
- Filebeat's input glob matches the trainer's real log layout, and a line written by the trainer's own logger
  is valid JSON carrying the ECS fields Filebeat's ndjson parser (expand_keys) turns into one document;
- the preflight checks refuse 0.0.0.0, a missing password source, and a beats link without certificate
  (Logstash) or CA (Filebeat) unless plain text is allowed, with their messages;
- each role's own include of the shared Elastic repository (package_source elastic_repo), run in check mode,
  writes the same deb822 definition with Signed-By naming the key file, and a Filebeat-only node gets the key
  (a throw-away key, pinned for the run: the key's fingerprint is checked in check mode too).
"""

from __future__ import annotations

import glob
import json
import logging
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.gpg_keys import make_keys
from tests.unit.local_playbook import preflight_case_task, role_include, run_local_playbook

ROOT = Path(__file__).resolve().parents[2]
ROLES = ["elasticsearch", "logstash", "kibana", "filebeat"]
MONITOR_ADDRESS = "192.0.2.20"
VAULT_PASSWORDS = {
    "elasticsearch_elastic_password": "vault-elastic-Pw-4711",
    "elasticsearch_kibana_system_password": "vault-kibana-Pw-4712",
    "elasticsearch_logstash_writer_password": "vault-writer-Pw-4713",
}
YAML_FILES = {
    "elasticsearch": ["elasticsearch.yml"],
    "logstash": ["logstash.yml", "pipelines.yml"],
    "kibana": ["kibana.yml"],
    "filebeat": ["filebeat.yml"],
}


def _templates() -> dict[str, list[Path]]:
    return {role: sorted((ROOT / "roles" / role / "templates").glob("*.j2")) for role in ROLES}


def _ansible_playbook(tmp_path: Path, playbook: list[dict[str, Any]], inventory: Path) -> None:
    proc = run_local_playbook(tmp_path, playbook, "-i", str(inventory))
    assert proc.returncode == 0, f"ansible-playbook failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"


def _inventory(tmp_path: Path) -> Path:
    """The production layout in miniature: monitor1 in group elk (run locally), node1 in filebeat; and two
    groups of Logstash hosts (never run) whose inventory allows a plain-text beats input, all or in part."""
    path = tmp_path / "hosts.yml"
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    plaintext = {"ansible_host": "192.0.2.22", "logstash_beats_allow_plaintext": True}
    path.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "elk": {"hosts": {"monitor1": {"ansible_host": MONITOR_ADDRESS, **local}}},
                        "filebeat": {"hosts": {"node1": {"ansible_host": "192.0.2.11", **local}}},
                        # Logstash hosts whose inventory allows a plain-text beats input: all, or one of two.
                        "elk_plaintext": {"hosts": {"monitor2": plaintext}},
                        "elk_mixed": {
                            "hosts": {"monitor2": None, "monitor3": {"ansible_host": "192.0.2.23"}}
                        },
                    }
                }
            }
        )
    )
    return path


def _role_vars_files() -> list[str]:
    files = []
    for role in ROLES:
        files += [
            str(ROOT / "roles" / role / "defaults" / "main.yml"),
            str(ROOT / "roles" / role / "vars" / "main.yml"),
        ]
    return files


# --- rendering ----------------------------------------------------------------------------------------


def _variants(tmp_path: Path) -> dict[str, dict[str, Any]]:
    return {
        "default": {},
        "tls": {
            **VAULT_PASSWORDS,
            "logstash_beats_ssl_cert_file": "/control/logstash.crt",
            "logstash_beats_ssl_key_file": "/control/logstash.pkcs8.key",
            "logstash_beats_ssl_client_ca_file": "/control/beats-ca.crt",
            "logstash_data_stream_namespace": "cluster_a",
            "kibana_tls_cert_file": "/control/kibana.crt",
            "kibana_tls_key_file": "/control/kibana.key",
            "filebeat_ssl_ca_file": "/control/logstash-ca.crt",
            "filebeat_ssl_cert_file": "/control/node1.crt",
            "filebeat_ssl_key_file": "/control/node1.key",
            "filebeat_run_root": str(tmp_path / "runs"),
            "filebeat_extra_labels": {"phase": "2b"},
        },
        # The one way to a plain-text beats link; Filebeat reads Logstash's variable.
        "plaintext": {"logstash_beats_allow_plaintext": True},
    }


VARIANTS = ["default", "tls", "plaintext"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp_path = tmp_path_factory.mktemp("elk-render")
    variants = _variants(tmp_path)
    outputs = {name: tmp_path / name for name in variants}
    tasks: list[dict[str, Any]] = []
    for name, overrides in variants.items():
        # What the roles' set_fact tasks compute on a host: the password from the vault or the ES host.
        runtime = {
            "_logstash_password": overrides.get(
                "elasticsearch_logstash_writer_password", "generated-writer-pw"
            ),
            "_kibana_password": overrides.get("elasticsearch_kibana_system_password", "generated-kibana-pw"),
        }
        for role, templates in _templates().items():
            (outputs[name] / role).mkdir(parents=True)
            for template in templates:
                tasks.append(
                    {
                        "name": f"Render {name}/{role}/{template.stem}",
                        "ansible.builtin.template": {
                            "src": str(template),
                            "dest": str(outputs[name] / role / template.stem),
                            "mode": "0600",
                        },
                        "vars": {**overrides, **runtime},
                    }
                )
    play = {
        "name": "Render the ELK and Filebeat templates",
        "hosts": "monitor1",
        "gather_facts": False,
        "vars_files": _role_vars_files(),
        "tasks": tasks,
    }
    _ansible_playbook(tmp_path, [play], _inventory(tmp_path))
    outputs["root"] = tmp_path
    return outputs


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _yaml(rendered: dict[str, Path], variant: str, role: str, name: str) -> dict[str, Any]:
    data = yaml.safe_load((rendered[variant] / role / name).read_text())
    assert isinstance(data, (dict, list)), f"{variant}/{role}/{name} is not a YAML mapping or list"
    return data  # type: ignore[return-value]


def test_every_template_renders(rendered: dict[str, Path]) -> None:
    for variant in VARIANTS:
        for role, templates in _templates().items():
            assert templates, f"roles/{role}/templates has no template"
            for template in templates:
                out = rendered[variant] / role / template.stem
                assert out.stat().st_size > 0, f"{variant}: {out.name} rendered empty"
                assert "{{" not in out.read_text(), f"{variant}: {out.name} kept a Jinja expression"


@pytest.mark.parametrize("variant", VARIANTS)
def test_yaml_files_parse(rendered: dict[str, Path], variant: str) -> None:
    for role, names in YAML_FILES.items():
        for name in names:
            _yaml(rendered, variant, role, name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_elasticsearch_security_is_on(rendered: dict[str, Path], variant: str) -> None:
    config = _flatten(_yaml(rendered, variant, "elasticsearch", "elasticsearch.yml"))
    for key in (
        "xpack.security.enabled",
        "xpack.security.http.ssl.enabled",
        "xpack.security.transport.ssl.enabled",
    ):
        assert config.get(key) is True, f"{key} is {config.get(key)!r}"
    tls = "/etc/elasticsearch/tls"
    for layer in ("http", "transport"):
        assert config[f"xpack.security.{layer}.ssl.certificate"] == f"{tls}/node.crt"
        assert config[f"xpack.security.{layer}.ssl.key"] == f"{tls}/node.key"
        assert config[f"xpack.security.{layer}.ssl.certificate_authorities"] == [f"{tls}/ca.crt"]
    assert config["discovery.type"] == "single-node"
    assert config["network.host"] == MONITOR_ADDRESS
    assert (config["http.port"], config["transport.port"]) == (9200, 9300)
    heap = (rendered[variant] / "elasticsearch" / "heap.options").read_text()
    assert "-Xms1g" in heap and "-Xmx1g" in heap


@pytest.mark.parametrize("variant", VARIANTS)
def test_kibana_uses_kibana_system_over_tls(rendered: dict[str, Path], variant: str) -> None:
    config = _flatten(_yaml(rendered, variant, "kibana", "kibana.yml"))
    assert config["server.host"] == MONITOR_ADDRESS
    assert config["server.port"] == 5601
    assert config["elasticsearch.hosts"] == [f"https://{MONITOR_ADDRESS}:9200"]
    assert config["elasticsearch.username"] == "kibana_system"
    assert config["elasticsearch.ssl.certificateAuthorities"] == ["/etc/kibana/tls/elasticsearch-ca.crt"]
    assert config["elasticsearch.ssl.verificationMode"] == "full"
    assert config["server.ssl.enabled"] is (variant == "tls")
    scheme = "https" if variant == "tls" else "http"
    assert config["server.publicBaseUrl"] == f"{scheme}://{MONITOR_ADDRESS}:5601"


@pytest.mark.parametrize("variant", VARIANTS)
def test_logstash_settings(rendered: dict[str, Path], variant: str) -> None:
    settings = _flatten(_yaml(rendered, variant, "logstash", "logstash.yml"))
    assert settings["api.http.host"] == MONITOR_ADDRESS
    assert settings["api.http.port"] == 9600
    assert settings["pipeline.ecs_compatibility"] == "v8"
    pipelines = _yaml(rendered, variant, "logstash", "pipelines.yml")
    assert pipelines == [
        {
            "pipeline.id": "ddp-trainer",
            "path.config": "/etc/logstash/conf.d/ddp-trainer.conf",
            "pipeline.workers": 2,
        }
    ]


def _env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value.strip('"')
    return values


def test_no_password_in_clear_outside_the_environment_files(rendered: dict[str, Path]) -> None:
    out = rendered["tls"]
    secrets = set(VAULT_PASSWORDS.values())
    for path in sorted(out.rglob("*")):
        if path.is_file() and not path.name.endswith(".env"):
            text = path.read_text()
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{path.relative_to(out)} holds a password in clear"
    # The services read the passwords from their environment files, which the configs reference by name.
    logstash_env = _env_file(out / "logstash" / "logstash.env")
    kibana_env = _env_file(out / "kibana" / "kibana.env")
    assert logstash_env["LOGSTASH_ES_PASSWORD"] == VAULT_PASSWORDS["elasticsearch_logstash_writer_password"]
    assert kibana_env["KIBANA_ES_PASSWORD"] == VAULT_PASSWORDS["elasticsearch_kibana_system_password"]
    assert 'password => "${LOGSTASH_ES_PASSWORD}"' in (out / "logstash" / "ddp-trainer.conf").read_text()
    kibana = _flatten(_yaml(rendered, "tls", "kibana", "kibana.yml"))
    assert kibana["elasticsearch.password"] == "${KIBANA_ES_PASSWORD}"


def test_secret_files_are_written_root_only() -> None:
    # The environment files and generated passwords are 0600 in the tasks that write them.
    checks = {
        "logstash": "Write the service environment",
        "kibana": "Write the service environment",
        "elasticsearch": "Generate the missing passwords once",
    }
    for role, task_name in checks.items():
        tasks = yaml.safe_load((ROOT / "roles" / role / "tasks" / "configure.yml").read_text())
        task = next(t for t in tasks if t["name"].startswith(task_name))
        module = task.get("ansible.builtin.template") or task.get("ansible.builtin.copy")
        assert module["mode"] == "0600" and module["owner"] == "root", f"{role}: {task_name}"
        assert task.get("no_log") is True, f"{role}: {task_name} must be no_log"


# --- the Logstash pipeline, read structurally -----------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<arrow>=>)
  | (?P<op>==|!=|=~|!~|<=|>=|and|or|not|!)
  | (?P<punct>[{}\[\],])
  | (?P<word>[A-Za-z0-9_@.\-]+)
    """,
    re.VERBOSE,
)


_REGEX = re.compile(r"\s*/(?:[^/\\\n]|\\.)*/")


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        # A regex literal can only follow a match operator; elsewhere '/' is no token at all.
        if tokens and tokens[-1][1] in ("=~", "!~"):
            regex = _REGEX.match(text, pos)
            if regex:
                tokens.append(("regex", regex.group().strip()))
                pos = regex.end()
                continue
        match = _TOKEN.match(text, pos)
        assert match, f"unexpected character {text[pos]!r} at offset {pos}: {text[pos : pos + 40]!r}"
        kind = match.lastgroup or ""
        if kind not in ("space", "comment"):
            tokens.append((kind, match.group().strip()))
        pos = match.end()
    return tokens


class _Reader:
    """Just enough of Logstash's config grammar: sections, plugins, settings, conditionals."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> str:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else ""

    def take(self, expected: str | None = None) -> str:
        assert self.pos < len(self.tokens), "unexpected end of the pipeline"
        value = self.tokens[self.pos][1]
        assert expected is None or value == expected, (
            f"expected {expected!r}, got {value!r} (token {self.pos})"
        )
        self.pos += 1
        return value

    def config(self) -> dict[str, list[dict[str, Any]]]:
        sections: dict[str, list[dict[str, Any]]] = {}
        while self.pos < len(self.tokens):
            name = self.take()
            assert name in ("input", "filter", "output"), f"unknown section {name!r}"
            self.take("{")
            sections.setdefault(name, []).extend(self.plugins())
            self.take("}")
        return sections

    def plugins(self) -> list[dict[str, Any]]:
        plugins: list[dict[str, Any]] = []
        while self.peek() != "}":
            if self.peek() in ("if", "else"):
                plugins.extend(self.conditional())
                continue
            name = self.take()
            self.take("{")
            plugins.append({"plugin": name, **self.settings()})
            self.take("}")
        return plugins

    def conditional(self) -> list[dict[str, Any]]:
        # The condition itself is skipped up to the block; brackets in field references stay balanced.
        depth = 0
        while not (self.peek() == "{" and depth == 0):
            token = self.take()
            depth += token == "["
            depth -= token == "]"
            assert depth >= 0, "unbalanced [ ] in a condition"
        self.take("{")
        inner = self.plugins()
        self.take("}")
        return inner

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        while self.peek() != "}":
            key = self.take()
            self.take("=>")
            settings[key] = self.value()
        return settings

    def value(self) -> Any:
        token = self.take()
        if token == "[":
            items = []
            while self.peek() != "]":
                items.append(self.value())
                if self.peek() == ",":
                    self.take(",")
            self.take("]")
            return items
        if token == "{":
            mapping = {}
            while self.peek() != "}":
                key = self.value()
                self.take("=>")
                mapping[key] = self.value()
                if self.peek() == ",":
                    self.take(",")
            self.take("}")
            return mapping
        if token[:1] in "\"'":
            return token[1:-1]
        return token


def _pipeline(rendered: dict[str, Path], variant: str) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    text = (rendered[variant] / "logstash" / "ddp-trainer.conf").read_text()
    return text, _Reader(text).config()


@pytest.mark.parametrize("variant", VARIANTS)
def test_logstash_pipeline_structure(rendered: dict[str, Path], variant: str) -> None:
    text, config = _pipeline(rendered, variant)
    code = "".join(value for kind, value in _tokens(text) if kind == "punct")
    assert code.count("{") == code.count("}") and code.count("[") == code.count("]")
    assert list(config) == ["input", "filter", "output"]
    beats = [p for p in config["input"] if p["plugin"] == "beats"]
    assert len(beats) == 1
    assert beats[0]["port"] == "5044"
    assert beats[0]["host"] == MONITOR_ADDRESS
    # TLS unless plain text is allowed explicitly (and no certificate is given).
    assert beats[0]["ssl_enabled"] == ("false" if variant == "plaintext" else "true")
    if variant == "plaintext":
        assert not any(
            key in beats[0] for key in ("ssl_certificate", "ssl_key", "ssl_certificate_authorities")
        )
    else:
        assert beats[0]["ssl_certificate"] == "/etc/logstash/tls/beats.crt"
        assert beats[0]["ssl_key"] == "/etc/logstash/tls/beats.key"
    if variant == "tls":
        assert beats[0]["ssl_certificate_authorities"] == ["/etc/logstash/tls/beats-client-ca.crt"]
        assert beats[0]["ssl_client_authentication"] == "required"
    else:
        assert "ssl_client_authentication" not in beats[0]
    (es,) = [p for p in config["output"] if p["plugin"] == "elasticsearch"]
    assert es["ssl_enabled"] == "true"
    assert es["ssl_verification_mode"] == "full"
    assert es["ssl_certificate_authorities"] == ["/etc/logstash/tls/elasticsearch-ca.crt"]
    assert es["hosts"] == [f"https://{MONITOR_ADDRESS}:9200"]
    assert es["user"] == "logstash_writer"
    namespace = "cluster_a" if variant == "tls" else "default"
    stream = f"{es['data_stream_type']}-{es['data_stream_dataset']}-{es['data_stream_namespace']}"
    assert stream == f"logs-ddp.trainer-{namespace}"
    # The writer role may write exactly that stream pattern.
    es_defaults = yaml.safe_load((ROOT / "roles" / "elasticsearch" / "defaults" / "main.yml").read_text())
    patterns = es_defaults["elasticsearch_logstash_writer_indices"]
    assert any(re.fullmatch(re.escape(p).replace(r"\*", ".*"), stream) for p in patterns), patterns
    # The logs are ECS already: no parsing of the message, no renaming.
    filters = {p["plugin"] for p in config["filter"]}
    assert filters <= {"mutate"}, f"unexpected filters {filters}"
    assert not any("rename" in p or "remove_field" in p for p in config["filter"]), (
        "ECS fields must stay as they are"
    )


def test_logstash_phase_from_the_run_name(rendered: dict[str, Path]) -> None:
    # The gsub in the filter, applied the way Logstash does (Ruby regex, \1 backreference).
    _, config = _pipeline(rendered, "default")
    strip = next(p for p in config["filter"] if "gsub" in p)
    field, pattern, replacement = strip["gsub"]
    assert field == "[labels][phase]"
    python_replacement = replacement.replace("\\1", r"\g<1>")
    for run, phase in {"phase1": "1", "phase2a": "2a", "phase2c-retry": "2c", "phase12b": "12b"}.items():
        assert re.sub(pattern, python_replacement, run) == phase


# --- Filebeat: the input glob and the trainer's real log lines -------------------------------------------


def _filebeat_input(rendered: dict[str, Path], variant: str) -> dict[str, Any]:
    config = _yaml(rendered, variant, "filebeat", "filebeat.yml")
    (stream,) = config["filebeat.inputs"]
    return stream  # type: ignore[no-any-return]


@pytest.mark.parametrize("variant", VARIANTS)
def test_filebeat_config(rendered: dict[str, Path], variant: str) -> None:
    config = _flatten(_yaml(rendered, variant, "filebeat", "filebeat.yml"))
    stream = _filebeat_input(rendered, variant)
    assert stream["type"] == "filestream" and stream["id"] == "ddp-trainer-ranks"
    assert stream["parsers"] == [
        {"ndjson": {"target": "", "overwrite_keys": True, "add_error_key": True, "expand_keys": True}}
    ]
    labels = stream["processors"][0]["add_fields"]
    assert labels["target"] == "labels"
    assert labels["fields"]["node"] == "monitor1"  # the inventory hostname of the host it runs on
    assert config["name"] == "monitor1"
    # Default output: every host of group elk at its address and Logstash's beats port.
    assert config["output.logstash.hosts"] == [f"{MONITOR_ADDRESS}:5044"]
    # The same side of the switch as Logstash's beats input (test_logstash_pipeline_structure).
    assert config["output.logstash.ssl.enabled"] is (variant != "plaintext")
    if variant == "plaintext":
        assert "output.logstash.ssl.certificate_authorities" not in config
    else:
        assert config["output.logstash.ssl.certificate_authorities"] == ["/etc/filebeat/tls/logstash-ca.crt"]
        assert config["output.logstash.ssl.verification_mode"] == "full"
    if variant == "tls":
        assert config["output.logstash.ssl.certificate"] == "/etc/filebeat/tls/client.crt"
        assert labels["fields"]["phase"] == "2b"


def test_filebeat_default_glob_is_the_trainers_run_root(rendered: dict[str, Path]) -> None:
    trainer = yaml.safe_load((ROOT / "roles" / "ddp_trainer" / "defaults" / "main.yml").read_text())
    assert _filebeat_input(rendered, "default")["paths"] == [
        f"{trainer['ddp_trainer_run_root']}/*/logs/rank*.ndjson"
    ]


def _dist_env(rank: int, local_rank: int) -> Any:
    import torch

    from ddp.dist import DistEnv

    return DistEnv(
        rank=rank,
        local_rank=local_rank,
        world_size=8,
        local_world_size=4,
        node="node2",
        restart_count=1,
        backend="gloo",
        device=torch.device("cpu"),
    )


def _write_trainer_logs(run_root: Path) -> list[Path]:
    """Log lines written by the trainer's own logger into its real layout <root>/<run>/logs/rank<R>.ndjson."""
    from ddp.logs import setup_logging

    written = []
    for run, rank, local_rank in [("phase2a", 4, 0), ("phase2a", 5, 1), ("phase2b-retry", 11, 3)]:
        log_dir = run_root / run / "logs"
        logger = setup_logging(log_dir, _dist_env(rank, local_rank), run, "INFO")
        # The same call shape as the trainer's heartbeat (ddp/telemetry.py).
        logging.getLogger("ddp.trainer").info(
            "step %d/%d loss %.4f %.1f samples/s (job) sigma %.1f",
            40,
            100,
            0.5,
            812.0,
            3.2,
            extra={
                "trainer": {
                    "step": 40,
                    "epoch": 1,
                    "loss": 0.5,
                    "global_samples_per_second": 812.0,
                    "comm_overhead_ratio": 0.08,
                    "event": "heartbeat",
                }
            },
        )
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)
        written.append(log_dir / f"rank{rank}.ndjson")
    return written


def _expand_keys(document: dict[str, Any]) -> dict[str, Any]:
    """Filebeat's ndjson `expand_keys`: dotted keys become nested objects; a clash is an error."""
    expanded: dict[str, Any] = {}
    for key, value in document.items():
        value = _expand_keys(value) if isinstance(value, dict) else value
        *parents, leaf = key.split(".") if not key.startswith("@") else [key]
        node = expanded
        for part in parents:
            node = node.setdefault(part, {})
            assert isinstance(node, dict), f"key {key!r} clashes with a value at {part!r}"
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf].update(value)
        else:
            assert leaf not in node, f"key {key!r} is given twice"
            node[leaf] = value
    return expanded


def test_filebeat_glob_matches_the_trainer_log_files(rendered: dict[str, Path]) -> None:
    run_root = rendered["root"] / "runs"
    logs = _write_trainer_logs(run_root)
    # Files that must not be shipped: status files, checkpoints, rotated or other logs.
    for other in [
        "phase2a/status/rank4.json",
        "phase2a/logs/rank4.ndjson.1",
        "phase2a/checkpoints/step40.pt",
        "phase2a/logs/launcher.log",
        "summary.json",
    ]:
        (run_root / other).parent.mkdir(parents=True, exist_ok=True)
        (run_root / other).write_text("{}\n")
    paths = _filebeat_input(rendered, "tls")["paths"]
    assert paths == [f"{run_root}/*/logs/rank*.ndjson"]
    matched = sorted(Path(p) for pattern in paths for p in glob.glob(pattern))
    assert matched == sorted(logs)


def test_trainer_log_lines_are_what_the_ndjson_parser_expects(rendered: dict[str, Path]) -> None:
    run_root = rendered["root"] / "runs-parse"
    for path in _write_trainer_logs(run_root):
        lines = path.read_text().splitlines()
        assert len(lines) == 1, f"{path}: one JSON document per line expected"
        raw = json.loads(lines[0])
        doc = _expand_keys(raw)
        # @timestamp is taken over by Filebeat (overwrite_keys) only when it is RFC 3339.
        assert datetime.fromisoformat(doc["@timestamp"].replace("Z", "+00:00")).tzinfo is not None
        assert doc["log"]["level"] == "info"
        assert doc["message"].startswith("step 40/100 loss 0.5000")
        assert doc["service"]["name"] == "ddp-trainer"
        assert doc["host"]["name"] == "node2"
        assert doc["ecs"]["version"]
        assert set(doc["labels"]) == {"run", "rank", "local_rank", "world_size", "restart"}
        assert doc["labels"]["world_size"] == 8 and doc["labels"]["restart"] == 1
        assert f"rank{doc['labels']['rank']}.ndjson" == path.name
        assert path.parent.parent.name == doc["labels"]["run"]
        assert doc["trainer"]["event"] == "heartbeat" and doc["trainer"]["step"] == 40
        # No `error` key to mix up with add_error_key's, nothing the labels processor overwrites.
        assert "error" not in doc and "node" not in doc["labels"]


# --- preflight ------------------------------------------------------------------------------------------

PREFLIGHT_CASES: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "es_any_address": (
        "elasticsearch",
        {"elasticsearch_listen_address": "0.0.0.0"},
        "elasticsearch_listen_address must be the monitoring host's address (got '0.0.0.0'",
    ),
    "es_any_address_allowed": (
        "elasticsearch",
        {"elasticsearch_listen_address": "0.0.0.0", "elasticsearch_allow_any_address": True},
        None,
    ),
    "es_no_password_source": (
        "elasticsearch",
        {
            "elasticsearch_generate_passwords": False,
            "elasticsearch_elastic_password": "vault-elastic-Pw-4711",
        },
        "No password source for kibana_system, logstash_writer",
    ),
    "es_vault_passwords": (
        "elasticsearch",
        {**VAULT_PASSWORDS, "elasticsearch_generate_passwords": False},
        None,
    ),
    "es_short_password": (
        "elasticsearch",
        {"elasticsearch_elastic_password": "Shrt-pw-9"},
        "The vault passwords of elastic are too short: 12 characters at least",
    ),
    "es_half_tls": (
        "elasticsearch",
        {"elasticsearch_tls_cert_file": "/nonexistent/node.crt"},
        "elasticsearch_tls_ca_cert_file, elasticsearch_tls_cert_file and elasticsearch_tls_key_file"
        " are all set",
    ),
    "es_defaults": ("elasticsearch", {}, None),
    "logstash_any_address": (
        "logstash",
        {"logstash_listen_address": "::"},
        "logstash_listen_address must be the monitoring host's address (got '::'",
    ),
    "logstash_no_password_source": (
        "logstash",
        {"logstash_elasticsearch_password_file": ""},
        "No password source for the Elasticsearch user logstash_writer",
    ),
    "logstash_http_output": (
        "logstash",
        {"logstash_elasticsearch_hosts": ["http://192.0.2.20:9200"]},
        "logstash_elasticsearch_hosts must be https:// URLs",
    ),
    # The beats input: TLS by default, so certificate and key are needed; plain text only when allowed.
    "logstash_defaults": (
        "logstash",
        {},
        "The beats input uses TLS: logstash_beats_ssl_cert_file and logstash_beats_ssl_key_file (PKCS#8) must"
        " name files on the control machine (got '' and '')",
    ),
    "logstash_plaintext_not_allowed": (
        "logstash",
        {"logstash_beats_allow_plaintext": False},
        "To send the logs in clear instead, set logstash_beats_allow_plaintext: true.",
    ),
    "logstash_tls": (
        "logstash",
        {
            "logstash_beats_ssl_cert_file": "@files/beats.crt",
            "logstash_beats_ssl_key_file": "@files/beats.key",
        },
        None,
    ),
    "logstash_tls_missing_key": (
        "logstash",
        {
            "logstash_beats_ssl_cert_file": "@files/beats.crt",
            "logstash_beats_ssl_key_file": "/nonexistent.key",
        },
        "The beats input uses TLS",
    ),
    "logstash_plaintext_allowed": ("logstash", {"logstash_beats_allow_plaintext": True}, None),
    # The TLS option names need Logstash 8.10+ (Debian's epoch-prefixed version string is understood).
    "logstash_old_version": (
        "logstash",
        {"logstash_beats_allow_plaintext": True, "logstash_version": "1:8.9.2-1"},
        "logstash_version '1:8.9.2-1' is older than 8.10",
    ),
    "logstash_pinned_version": (
        "logstash",
        {"logstash_beats_allow_plaintext": True, "logstash_version": "1:8.15.3-1"},
        None,
    ),
    "kibana_any_address": (
        "kibana",
        {"kibana_listen_address": "0.0.0.0"},
        "kibana_listen_address must be the monitoring host's address (got '0.0.0.0'",
    ),
    "kibana_no_password_source": (
        "kibana",
        {"kibana_elasticsearch_secrets_host": ""},
        "No password source for the Elasticsearch user kibana_system",
    ),
    "kibana_defaults": ("kibana", {}, None),
    "filebeat_no_logstash": (
        "filebeat",
        {"filebeat_logstash_group": "nowhere"},
        "filebeat_logstash_hosts must list Logstash's beats input as host:port (got [])",
    ),
    "filebeat_any_address": (
        "filebeat",
        {"filebeat_logstash_hosts": ["0.0.0.0:5044"]},
        "filebeat_logstash_hosts must list",
    ),
    # Filebeat's side of the beats link: the CA of Logstash's certificate, unless Logstash allows plain text.
    "filebeat_defaults": (
        "filebeat",
        {},
        "Logstash's beats input uses TLS: filebeat_ssl_ca_file must name the CA of Logstash's certificate",
    ),
    "filebeat_tls": ("filebeat", {"filebeat_ssl_ca_file": "@files/logstash-ca.crt"}, None),
    "filebeat_plaintext_allowed": ("filebeat", {"logstash_beats_allow_plaintext": True}, None),
    # Set for the Logstash hosts only (group_vars/elk), read from there.
    "filebeat_plaintext_allowed_by_logstash_hosts": (
        "filebeat",
        {"filebeat_logstash_group": "elk_plaintext"},
        None,
    ),
    "filebeat_plaintext_not_allowed_by_every_logstash_host": (
        "filebeat",
        {"filebeat_logstash_group": "elk_mixed"},
        "filebeat_ssl_ca_file must name the CA of Logstash's certificate",
    ),
}
# With every variable check passed, the last is the distribution's: its message, or none on a systemd host.
DISTRIBUTION_CHECK = "installs Elastic's package on Debian/Ubuntu or RHEL-like systems with systemd"


def _with_files(overrides: dict[str, Any], files: Path) -> dict[str, Any]:
    """The case's settings with "@files/NAME" made an existing file (for the checks that files exist)."""
    resolved = {}
    for key, value in overrides.items():
        if isinstance(value, str) and value.startswith("@files/"):
            path = files / value.removeprefix("@files/")
            path.write_text("-----BEGIN TEST-----\n")
            value = str(path)
        resolved[key] = value
    return resolved


@pytest.fixture(scope="module")
def preflight(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp_path = tmp_path_factory.mktemp("elk-preflight")
    results = tmp_path / "results"
    results.mkdir()
    files = tmp_path / "files"
    files.mkdir()
    tasks = [
        preflight_case_task(case, role, _with_files(overrides, files), results / case)
        for case, (role, overrides, _) in PREFLIGHT_CASES.items()
    ]
    play = {
        "name": "Preflight checks of the ELK and Filebeat roles",
        "hosts": "monitor1",
        "gather_facts": True,
        "gather_subset": ["!all", "!min", "distribution", "service_mgr"],
        "tasks": tasks,
    }
    _ansible_playbook(tmp_path, [play], _inventory(tmp_path))
    return {case: (results / case).read_text() for case in PREFLIGHT_CASES}


@pytest.mark.parametrize("case", list(PREFLIGHT_CASES))
def test_preflight(preflight: dict[str, str], case: str) -> None:
    _, _, expected = PREFLIGHT_CASES[case]
    message = " ".join(preflight[case].split())
    if expected is None:
        assert message == "" or DISTRIBUTION_CHECK in message, f"{case}: refused: {message}"
    else:
        assert expected in message, f"{case}: expected {expected!r}, got {message!r}"
    # Failure messages name the variables, never a password.
    assert not any(secret in message for secret in [*VAULT_PASSWORDS.values(), "Shrt-pw-9"])


# --- the roles agree on what they hand each other --------------------------------------------------------


def test_kibana_and_logstash_read_what_elasticsearch_writes() -> None:
    def load(role: str, kind: str) -> dict[str, Any]:
        return yaml.safe_load((ROOT / "roles" / role / kind / "main.yml").read_text())  # type: ignore[no-any-return]

    es_defaults, es_vars = load("elasticsearch", "defaults"), load("elasticsearch", "vars")
    ca = es_vars["_elasticsearch_ca_cert"].replace(
        "{{ _elasticsearch_tls_dir }}", es_vars["_elasticsearch_tls_dir"]
    )
    ca = ca.replace("{{ _elasticsearch_config_dir }}", es_vars["_elasticsearch_config_dir"])
    assert ca == "/etc/elasticsearch/tls/ca.crt"
    secrets = es_defaults["elasticsearch_secrets_dir"]
    # The password files are named after the keys of _elasticsearch_users.
    assert set(es_vars["_elasticsearch_users"]) == {"elastic", "kibana_system", "logstash_writer"}
    for role, user in (("kibana", "kibana_system"), ("logstash", "logstash_writer")):
        defaults = load(role, "defaults")
        assert defaults[f"{role}_elasticsearch_ca_remote_file"] == ca
        expected = f"{{{{ elasticsearch_secrets_dir | default('{secrets}') }}}}/{user}.password"
        assert defaults[f"{role}_elasticsearch_password_file"] == expected


# --- one Elastic repository for every role (package_source elastic_repo) ---------------------------------

ELASTIC_KEY_FILE = "/etc/apt/keyrings/elastic-8.x.asc"
# Where each role runs in the production layout: the monitoring host, or a node running Filebeat only.
ROLE_HOSTS = {"elasticsearch": "monitor1", "logstash": "monitor1", "kibana": "monitor1", "filebeat": "node1"}


@pytest.fixture(scope="module")
def elastic_repo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each role's include of elastic_repo, run in check mode (nothing is written) on the host it runs on in
    production, each with only its own role's variables: what its key and repository tasks would write."""
    if not Path("/etc/debian_version").exists():
        pytest.skip("the APT tasks run on a Debian-family host only")
    tmp_path = tmp_path_factory.mktemp("elastic-repo")
    # A mirror's copy of the key: a throw-away key, pinned for this run in place of Elastic's.
    mirror_key = make_keys(tmp_path, "elastic-mirror")["elastic-mirror"]
    key = tmp_path / "GPG-KEY-elasticsearch"
    key.write_text(mirror_key.path.read_text())
    results = tmp_path / "results"
    results.mkdir()
    plays = [
        {
            "name": f"The {role} role's Elastic repository",
            "hosts": host,
            "gather_facts": True,
            "gather_subset": ["!all", "!min", "distribution"],
            "vars_files": [
                str(ROOT / "roles" / role / "defaults" / "main.yml"),
                str(ROOT / "roles" / role / "vars" / "main.yml"),
            ],
            "tasks": [
                role_include(role, "package_source", "elastic_repo"),
                {
                    "name": "Record what the key and repository tasks would write",
                    "ansible.builtin.copy": {
                        "content": "{{ {'key': _package_source_signing_key,"
                        " 'download': _package_source_signing_key_download,"
                        " 'repo': _package_source_elastic_apt_repo} | to_json }}",
                        "dest": str(results / f"{role}.json"),
                        "mode": "0644",
                    },
                    "check_mode": False,
                },
            ],
        }
        for role, host in ROLE_HOSTS.items()
    ]
    # A site mirroring Elastic sets the elasticsearch role's key URL once; every role follows it.
    proc = run_local_playbook(
        tmp_path,
        plays,
        "-i",
        str(_inventory(tmp_path)),
        "--check",
        "--diff",
        "-e",
        f"elasticsearch_repo_gpg_key_url=file://{key}",
        "-e",
        json.dumps(
            {
                "package_source_elastic_gpg_key_fingerprints": [mirror_key.fingerprint],
                # The key is staged (and its fingerprint read) for real in check mode too.
                "package_source_cache_dir": str(tmp_path / "cache"),
                # What the common role reads on a node; gpg is installed here (it made the key).
                "common_installed_packages": {"gpg": []},
            }
        ),
    )
    assert proc.returncode == 0, f"ansible-playbook failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    return {role: json.loads((results / f"{role}.json").read_text()) for role in ROLE_HOSTS}


def _sources_diff(result: dict[str, Any]) -> dict[str, Any]:
    diff = result["repo"]["diff"]
    return diff[0] if isinstance(diff, list) else diff  # type: ignore[no-any-return]


def test_every_elastic_role_writes_the_same_signed_repository(
    elastic_repo: dict[str, dict[str, Any]],
) -> None:
    written = {role: str(_sources_diff(result)["after"]) for role, result in elastic_repo.items()}
    assert len(set(written.values())) == 1, "the roles write different repository definitions:\n" + "\n".join(
        f"--- {role}\n{text}" for role, text in written.items()
    )
    fields = dict(
        line.split(": ", 1) for line in written["filebeat"].splitlines() if line and not line.startswith("#")
    )
    assert fields == {
        "X-Repolib-Name": "elastic-8.x",
        "Types": "deb",
        "URIs": "https://artifacts.elastic.co/packages/8.x/apt",
        "Suites": "stable",
        "Components": "main",
        "Signed-By": ELASTIC_KEY_FILE,
    }


def test_a_filebeat_only_node_gets_the_key(elastic_repo: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    inventory = yaml.safe_load(_inventory(tmp_path).read_text())
    groups = {name for name, group in inventory["all"]["children"].items() if "node1" in group["hosts"]}
    assert groups == {"filebeat"}
    key = elastic_repo["filebeat"]["key"]
    assert not key.get("skipped"), "the filebeat role skipped the key install"
    assert key["dest"] == ELASTIC_KEY_FILE and key["changed"], key
    # The key the elasticsearch role's mirror setting names, on a host where that role never runs.
    download = elastic_repo["filebeat"]["download"]
    assert download["url"].startswith("file://") and download["url"].endswith("/GPG-KEY-elasticsearch")
