"""Every shell command the program can run passes shellcheck, and its quoting survives a real shell.

The command lines are taken from the whole program under mocks (every Command's create, update
and delete) for several stacks, including kubeconfig paths with spaces and quotes, so a
renderer that forgets to quote fails here.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import harness
from components.cluster import OPS, ops_command
from tools import graph as G
from tools import need

# What pulumi-command runs a line with when the Command sets no interpreter.
DEFAULT_INTERPRETER = ["/bin/sh", "-c"]
SHELLS = {"/bin/sh": "sh", "sh": "sh", "/bin/bash": "bash", "bash": "bash", "/usr/bin/env bash": "bash"}
ODD_PATH = "/tmp/kube configs/it's mine/config"  # a literal $ would draw SC2016 (info) on correct quoting


def stacks(tmp) -> dict[str, tuple[dict, dict, str]]:
    """name -> (config, environment overrides, the kubeconfig a remote's kubectl line must use)."""
    base = harness.offline(harness.stack_config())
    existing = harness.existing_west(base, context="west ctx", kubeconfig="~/kube configs/west's.yaml")
    west = existing["remotes"][0]
    return {
        "east-west, ~/.kube/config": (base, {"KUBECONFIG": ""}, "~/.kube/config"),
        "east-west, odd $KUBECONFIG": (base, {"KUBECONFIG": ODD_PATH}, ODD_PATH),
        "3 remotes": (G.with_remotes(base, 3), {"KUBECONFIG": ""}, "~/.kube/config"),
        "existing west with its own kubeconfig": (existing, {"KUBECONFIG": ""}, west["kubeconfig"]),
    }


@pytest.fixture(scope="module")
def command_lines(tmp_path_factory) -> list[tuple[str, str, str, str]]:
    """(where, shell, line, remote kubeconfig) for every distinct command line of every stack."""
    tmp = tmp_path_factory.mktemp("shellcheck")
    seen, out = set(), []
    for stack, (cfg, env, kubeconfig) in stacks(tmp).items():
        saved = {k: os.environ.get(k) for k in env}
        try:
            os.environ.update(env)
            result = harness.run_main(cfg)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        inputs = G.inputs_by_urn(result.requests, result.records)
        for urn, q in result.requests.items():
            if q["type"] != G.COMMAND_TYPE:
                continue
            plain = harness.unwrap(inputs[urn])
            interpreter = plain.get("interpreter") or DEFAULT_INTERPRETER
            shell = SHELLS.get(" ".join(interpreter[:-1])) or SHELLS.get(interpreter[0])
            for field in ("create", "update", "delete"):
                line = plain.get(field)
                if line and (shell, line) not in seen:
                    seen.add((shell, line))
                    out.append((f"{stack}: {G.short(urn)}.{field}", shell or f"<{interpreter}>", line, kubeconfig))
    return out


def shellcheck(items: list[tuple], tmp) -> list[str]:
    tool = need("shellcheck")
    found = []
    for i, (where, shell, line, *_) in enumerate(items):
        path = tmp / f"cmd{i}.sh"
        path.write_text(line + "\n")
        proc = subprocess.run([tool, "--shell", shell, "--severity", "style", "--format", "gcc", str(path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            found.append(f"{where}\n  $ {line}\n  " + proc.stdout.strip().replace(str(path), "line").replace("\n", "\n  "))
    return found


def test_the_program_runs_shell_commands_only_through_known_shells(command_lines):
    assert command_lines, "no Command registered: nothing would be checked"
    unknown = [(w, s) for w, s, *_ in command_lines if s not in ("sh", "bash")]
    assert not unknown, unknown


def test_every_command_line_passes_shellcheck(command_lines, tmp_path):
    found = shellcheck(command_lines, tmp_path)
    assert not found, f"{len(found)} command line(s) fail shellcheck:\n" + "\n".join(found)


def test_shellcheck_would_catch_an_unquoted_expansion(tmp_path):
    found = shellcheck([("bad", "sh", "kubectl --kubeconfig $KUBECONFIG_PATH get ns")], tmp_path)
    assert found and "SC2086" in found[0]


def test_the_odd_kubeconfig_path_reaches_a_command(command_lines):
    """The odd path is rendered into a Command (else the quoting check above proves nothing for it)."""
    assert any("odd $KUBECONFIG" in where and "kube configs" in line for where, _, line, _ in command_lines)


def test_kubectl_lines_reach_the_intended_kubeconfig_through_a_real_shell(command_lines, tmp_path):
    """Each kubectl line, run by its shell with kubectl stubbed out, passes the configured file."""
    home = str(tmp_path / "home dir")
    checked = 0
    for where, shell, line, kubeconfig in command_lines:
        words = G.command_words(line)
        if "kubectl" not in words or "--kubeconfig" not in words:
            continue
        stub = 'kubectl() { for a in "$@"; do printf "%s\\n" "$a"; done; exit 0; }; '
        proc = subprocess.run([shell, "-c", stub + line], capture_output=True, text=True, env={"HOME": home, "PATH": "/usr/bin:/bin"})
        args = proc.stdout.splitlines()
        assert "--kubeconfig" in args, f"{where}: {proc.stdout}{proc.stderr}"
        want = home + kubeconfig[1:] if kubeconfig.startswith("~/") else kubeconfig
        assert args[args.index("--kubeconfig") + 1] == want, where
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("args", [
    ["start", "--profile", "east", "--static-ip", "192.168.50.2"],
    ["network-create", "--name", "my net", "--subnet", "192.168.50.0/24"],
    ["status", "--profile", "it's", "--static-ip", "$(rm -rf /)"],
    ["delete", "--profile", "a;b|c&d", "--x", "`x`", "--y", "*", "--z", ""],
])
def test_ops_command_arguments_reach_the_script_unchanged(args, tmp_path):
    """Run the exact line with sh, the script swapped for one that prints its argv."""
    line = ops_command(*args)
    prefix = f"python3 {OPS} "
    assert line.startswith(prefix)
    script = tmp_path / "echo_args.py"
    script.write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    proc = subprocess.run(["/bin/sh", "-c", f"python3 {script} " + line[len(prefix):]], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == args
