"""Run functional tests on Debian's stock kernel, in a VM, from the host.

This machine's kernel has no loadable modules (no 8021q, geneve, openvswitch,
nf_conntrack_bridge); every compute node's distribution kernel has them.
virtme-ng boots the installed Debian kernel (``linux-image-amd64``) on the
host's own root filesystem, read-only with writable overlays, so the guest
runs this very checkout and its virtualenv: nothing is copied, nothing can
drift. The VM boots once and runs every selected test in one pytest.

The guest writes a JUnit report, pytest's output and, on failure, its logs
(dmesg, agent and OVS logs) into a results directory shared with the host
(``--rwdir``; unix sockets stay on the guest's own /tmp and /run, since
9p cannot hold them). The host prints one line per test, the summary and
the stage's time, and exits with the guest's pytest status.

Nested KVM is probed, not assumed: where qemu cannot run a KVM guest (seen
here: an assertion on MSR 0x10a) the VM runs under TCG, slower but the same.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

# Loaded in the guest before the tests: what the host lacks, by feature.
MODULES = ("8021q", "vxlan", "geneve", "openvswitch", "vport-vxlan", "vport-geneve",
           "nf_conntrack_bridge", "nft_ct", "br_netfilter")
KVM_MARKER = "ovsbr-kvm-ok"
KVM_PROBE_SECONDS = 90
# The CI selection: tests of what only a stock kernel has. --full runs the
# whole functional suite in the VM.
CI_MARKER = "stock_kernel"
# How much longer tests may wait: TCG ran a test's agent start, plugging and
# pings 10-20 times slower than the host (a 5 s conformance test: 70-90 s).
TIME_SCALE = {True: 2, False: 10}  # KVM, TCG


def find_kernel(boot: str = "/boot", modules: str = "/lib/modules") -> str | None:
    """The newest installed kernel image whose modules are installed too."""
    found = []
    for image in glob.glob(os.path.join(boot, "vmlinuz-*")):
        version = os.path.basename(image)[len("vmlinuz-"):]
        if os.path.exists(os.path.join(modules, version, "modules.dep")):
            found.append((_version_key(version), image))
    return max(found)[1] if found else None


def _version_key(version: str) -> tuple:
    return tuple(int(x) if x.isdigit() else x for x in re.split(r"[.-]", version))


def vng_command(vng: str, kernel: str, script: str, rwdir: str, kvm: bool,
                cpus: int, memory: str) -> list[str]:
    cmd = [vng, "--run", kernel, "--user", "root", "--cpus", str(cpus), "--memory", memory,
           "--rwdir", rwdir, "--exec", f"bash {shlex.quote(script)}"]
    if not kvm:
        cmd.insert(3, "--disable-kvm")
    return cmd


def vng_env(vng: str) -> dict[str, str]:
    """vng runs its helpers (virtme-run) by name: they sit beside it."""
    return dict(os.environ, PATH=os.path.dirname(vng) + os.pathsep + os.environ.get("PATH", ""))


def kvm_works(vng: str, kernel: str, workdir: str) -> bool:
    """Boot once with KVM and see the guest run a command; False on any failure."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    probe = os.path.join(workdir, "kvm-probe.sh")
    with open(probe, "w") as f:
        f.write(f"echo {KVM_MARKER}\n")
    try:
        res = subprocess.run(vng_command(vng, kernel, probe, workdir, True, 1, "512M"),
                             capture_output=True, text=True, timeout=KVM_PROBE_SECONDS,
                             stdin=subprocess.DEVNULL, env=vng_env(vng))
    except subprocess.TimeoutExpired:
        return False
    return KVM_MARKER in res.stdout


def guest_script(top: str, results: str, pytest_args: list[str], time_scale: float = 1) -> str:
    """What the guest runs: load modules, run pytest on this checkout, keep logs."""
    modules = " ".join(MODULES)
    args = " ".join(shlex.quote(a) for a in pytest_args)
    return f"""set -u
exec </dev/null
# The guest's /tmp is an overlay of the host's: keep only what this run writes.
touch /run/ovsbr-vm-start
for m in {modules}; do modprobe -q "$m" || echo "guest: no module $m" >&2; done
cd {shlex.quote(top)}
export PYTHONDONTWRITEBYTECODE=1 OVSBR_STOCK_KERNEL=1 OVSBR_OVS_DATAPATH=system
export TMPDIR=/tmp OVSBR_TEST_TIME_SCALE={time_scale}
echo "guest: kernel $(uname -r), $(nproc) cpu(s)"
.venv/bin/pytest -p no:cacheprovider -q -ra --durations=0 \\
    --junitxml={shlex.quote(results)}/junit.xml {args} 2>&1 | tee {shlex.quote(results)}/pytest.log
rc=${{PIPESTATUS[0]}}
if [ "$rc" != 0 ]; then
    mkdir -p {shlex.quote(results)}/logs
    dmesg > {shlex.quote(results)}/logs/dmesg.txt 2>&1
    find /tmp -name '*.log' -newer /run/ovsbr-vm-start -size -2M 2>/dev/null |
    while read -r f; do
        cp "$f" "{results}/logs/$(echo "$f" | tr / _)" 2>/dev/null
    done
fi
echo "$rc" > {shlex.quote(results)}/rc
"""


def run_forwarding(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run ``cmd`` with its output through a pipe, copied to ours as it comes.

    qemu opens its console output with O_TRUNC: handed our stdout directly,
    it emptied the log file the whole test run was being written to.
    """
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, **kw) as proc:
        out = sys.stdout.buffer
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            out.write(chunk)
            out.flush()
        return subprocess.CompletedProcess(cmd, proc.wait())


def parse_junit(path: str) -> list[tuple[str, str]]:
    """(outcome, test id) per test case: passed, failed, error or skipped."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = "failed" if child.tag == "failure" else child.tag
                break
        cases.append((outcome, name))
    return cases


def summary(cases: list[tuple[str, str]]) -> str:
    """pytest's closing line: '3 passed, 1 failed, 2 skipped'."""
    counts = {k: sum(1 for o, _ in cases if o == k)
              for k in ("passed", "failed", "error", "skipped")}
    parts = [f"{counts['passed']} passed", f"{counts['failed'] + counts['error']} failed"]
    if counts["skipped"]:
        parts.append(f"{counts['skipped']} skipped")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/run-vm-tests", description="Functional tests on Debian's stock "
        "kernel in a virtme-ng VM (KVM if it works here, else TCG).")
    parser.add_argument("--full", action="store_true",
                        help="the whole functional suite, not only the stock-kernel tests")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--memory", default="3G")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    vng = shutil.which("vng", path=os.path.join(top, ".venv", "bin")) or shutil.which("vng")
    kernel = find_kernel()
    if vng is None or kernel is None:
        print("vm: needs virtme-ng (.venv) and an installed kernel with its modules "
              "(Debian linux-image-amd64); run tools/install-deps", file=sys.stderr)
        return 2
    selection = ["tests/functional"] if args.full else ["-m", CI_MARKER, "tests/functional"]
    t0 = time.monotonic()
    results = tempfile.mkdtemp(prefix="ovsbr-vm-")
    try:
        kvm = kvm_works(vng, kernel, results)
        print(f"vm: {os.path.basename(kernel)}, {'KVM' if kvm else 'TCG (no usable KVM)'}, "
              f"{'full functional suite' if args.full else 'stock-kernel tests'}",
              flush=True)
        script = os.path.join(results, "guest.sh")
        with open(script, "w") as f:
            f.write(guest_script(top, results, selection + args.pytest_args,
                                 TIME_SCALE[kvm]))
        proc = run_forwarding(vng_command(vng, kernel, script, results, kvm, args.cpus,
                                          args.memory), cwd=top, env=vng_env(vng))
        rc_file, junit = os.path.join(results, "rc"), os.path.join(results, "junit.xml")
        if not os.path.exists(rc_file) or not os.path.exists(junit):
            print(f"vm: the guest did not finish its tests (vng exited {proc.returncode})")
            return 1
        rc = int(open(rc_file).read().strip() or 1)
        cases = parse_junit(junit)
        print()  # the guest console may end mid-line
        for outcome, name in cases:
            print(f"vm {outcome.upper()} {name}")
        if rc != 0 and os.path.isdir(os.path.join(results, "logs")):
            failed = [n for o, n in cases if o in ("failed", "error")]
            for name in failed_first(os.listdir(os.path.join(results, "logs")), failed):
                _print_log(os.path.join(results, "logs"), name)
        print(f"stock-kernel VM stage took {time.monotonic() - t0:.0f} s "
              f"({'KVM' if kvm else 'TCG'})")
        print(f"vm: {summary(cases)}")  # last, alone: pytest's closing-line form
        return rc if cases else 1
    finally:
        shutil.rmtree(results, ignore_errors=True)


def failed_first(names: list[str], failed: list[str]) -> list[str]:
    """The guest logs worth printing: the failed tests' first, then those of
    no test (dmesg); passing tests' logs are left out, and so is pytest's
    own, which the console already showed whole.

    A test's logs live under its tmp_path, which pytest names after the
    test with non-word characters replaced and cut to 30 characters; CI
    shows only the start of a long output, so the failure's logs lead.
    """
    keys = [re.sub(r"\W", "_", n.split("::")[-1])[:30] for n in failed]
    mine = [n for n in sorted(names) if any(k in n for k in keys)]
    rest = [n for n in sorted(names)
            if n not in mine and "_pytest-" not in n and not n.endswith("pytest.log")]
    return mine + rest


def _print_log(logs: str, name: str) -> None:
    with open(os.path.join(logs, name), errors="replace") as f:
        tail = f.read()[-4000:]
    print(f"----- guest log {name} (tail) -----\n{tail}")


if __name__ == "__main__":
    sys.exit(main())
