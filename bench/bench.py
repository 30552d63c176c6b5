"""Start-up benchmark for kms-env (run through bench/run).

Starts moto and a 50 ms latency proxy on loopback, prepares N KMS ciphertexts (and an env
file of the original kms-env), then measures, side by side in one run, the median wall time
of starting `true` through:

  * `true` alone (the baseline);
  * kms-env exec with N = 0, 1, 10, 50 kms: values;
  * a shell entrypoint that loops `aws kms decrypt` per variable (N = 1, 10);
  * the original kms-env: `eval $(kms-env decrypt)` via Node (N = 1, 10, 50 secure: values).

It prints a table of medians and ratios, the stripped binary size and the peak RSS of
kms-env at N = 50.
"""

import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv", "bin")
NODE_DIR = os.path.join(ROOT, "tests", "node")
BIN = sys.argv[1]
RUNS = int(os.environ.get("BENCH_RUNS", "15"))
LATENCY_MS = 50


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def run_once(argv, env):
    """Wall time (s) of one run; fails loudly on a non-zero exit."""
    start = time.perf_counter()
    # stdout to /dev/null: the original's `decrypt` prints a line per variable.
    quiet = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    pid = os.posix_spawnp(argv[0], argv, env, file_actions=quiet)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:3]} failed with {status}")
    return elapsed


def peak_rss_kib(argv, env):
    """Peak RSS of `argv` as GNU time reports it. (posix_spawn's child shares this Python
    process's memory until exec, so its own rusage would count Python's pages.)"""
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + argv, env=env,
                         stderr=subprocess.PIPE, text=True, check=True)
    return int(out.stderr.strip().splitlines()[-1])


def measure(argv, env, runs=RUNS):
    run_once(argv, env)  # warm-up: fills the proxy's cache and the page cache
    return statistics.median(run_once(argv, env) for _ in range(runs))


def main():
    moto_port = free_port()
    moto = subprocess.Popen(
        [os.path.join(VENV, "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(moto_port)
    proxy = subprocess.Popen(
        [os.path.join(VENV, "python"), os.path.join(ROOT, "bench", "latency_proxy.py"),
         str(moto_port), str(LATENCY_MS)], stdout=subprocess.PIPE, text=True)
    proxy_port = int(proxy.stdout.readline())
    try:
        report(moto_port, proxy_port)
    finally:
        proxy.kill()
        moto.kill()


def report(moto_port, proxy_port):
    base_env = {
        "PATH": os.environ["PATH"], "HOME": "/nonexistent",
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    direct = dict(base_env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto_port}")
    slow = dict(base_env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy_port}")

    import boto3
    kms = boto3.client("kms", endpoint_url=direct["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id="bench", aws_secret_access_key="bench")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    values = []
    for i in range(50):
        blob = kms.encrypt(KeyId=key, Plaintext=f"bench-secret-{i:02}".encode())["CiphertextBlob"]
        values.append(base64.b64encode(blob).decode())

    # The original kms-env's env file (its own library code), for its `decrypt`.
    workdir = tempfile.mkdtemp()
    env_file = os.path.join(workdir, "app.env")
    node = ["node", os.path.join(NODE_DIR, "original.js")]
    subprocess.run(node + ["init", env_file, key], env=direct, check=True)
    subprocess.run(node + ["add", env_file] + [f"S{i:02}=bench-secret-{i:02}" for i in range(50)],
                   env=direct, check=True, stdout=subprocess.DEVNULL)
    pairs = dict(line.split("=", 1) for line in open(env_file).read().split("\n") if line)

    def kms_env(n):
        return dict(slow, **{f"S{i:02}": f"kms:{values[i]}" for i in range(n)})

    def original_env(n):
        keep = ["KMS_DATA_KEY", "AWS_REGION"] + [f"S{i:02}" for i in range(n)]
        return dict(slow, **{k: pairs[k] for k in keep})

    cli_loop = (
        'for v in $(env | sed -n "s/^\\(S[0-9]*\\)=kms:.*/\\1/p"); do '
        'eval "c=\\${$v#kms:}"; printf %s "$c" | base64 -d > "$T/$v"; '
        'p=$(aws kms decrypt --ciphertext-blob "fileb://$T/$v" --query Plaintext --output text | base64 -d); '
        'export "$v=$p"; done; exec true')
    cli_env = lambda n: dict(kms_env(n), PATH=f"{VENV}:{os.environ['PATH']}", T=workdir)
    original_cmd = ["sh", "-c", f'eval "$({" ".join(node)} decrypt)"; exec true']

    rows = []
    baseline = measure(["true"], slow)
    rows.append(("true alone (baseline)", 0, baseline, None))
    ours = {}
    for n in (0, 1, 10, 50):
        t = measure([BIN, "exec", "--", "true"], kms_env(n))
        ours[n] = t
        rows.append(("kms-env exec", n, t, None))
    rss50 = max(peak_rss_kib([BIN, "exec", "--", "true"], kms_env(50)) for _ in range(5))
    cli = {}
    for n in (1, 10):
        t = measure(["sh", "-c", cli_loop], cli_env(n), runs=max(10, RUNS // 2))
        cli[n] = t
        rows.append(("shell loop of `aws kms decrypt`", n, t, t / ours[n]))
    orig = {}
    for n in (1, 10, 50):
        t = measure(original_cmd, original_env(n), runs=max(10, RUNS // 2))
        orig[n] = t
        rows.append(("original kms-env, eval $(kms-env decrypt)", n, t, t / ours[n]))

    size = os.path.getsize(BIN)
    rtt = LATENCY_MS / 1000
    print(f"\n{RUNS} runs per kms-env case (10+ for the others), medians; one round trip = {LATENCY_MS} ms\n")
    print("| command | N | median | vs kms-env at same N |")
    print("|---|---:|---:|---:|")
    for name, n, t, ratio in rows:
        r = f"{ratio:.1f}x slower" if ratio else ""
        print(f"| {name} | {n} | {t * 1000:.1f} ms | {r} |")
    print()
    print(f"- N = 0 overhead over `true` alone: {(ours[0] - baseline) * 1000:.2f} ms (target <= 1 ms)")
    for n in (1, 10, 50):
        print(f"- N = {n}: {ours[n] / rtt:.2f} x one round trip (target <= 1.5)")
    print(f"- AWS CLI loop / kms-env at N = 10: {cli[10] / ours[10]:.0f}x (target >= 20)")
    print(f"- stripped binary: {size / 1e6:.1f} MB (target <= 10 MB)")
    print(f"- peak RSS at N = 50: {rss50 / 1024:.1f} MiB (target <= 15 MiB)")


if __name__ == "__main__":
    main()
