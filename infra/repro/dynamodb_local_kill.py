"""Does DynamoDB Local lose writes it acknowledged when it is SIGKILLed? No code of the chat's.

Run inside a loopback-only network namespace (DynamoDB Local listens on every interface):

    source infra/lib.sh && run_loopback_only .tools/venv/bin/python infra/repro/dynamodb_local_kill.py

Each round starts DynamoDB Local on files in a fresh private folder (-sharedDb -dbPath, as the
local stack runs it for outage tests), lets 4 writers put items (two with PutItem, two with
TransactWriteItems of two items) and records every write DynamoDB Local answered 200, SIGKILLs
it mid-write, starts it again on the same files and reads every acknowledged item back
(strongly consistent). Bounded: at most ROUNDS rounds, stops at the first loss.

With --term it stops DynamoDB Local with SIGTERM instead (the JVM's orderly exit), to tell a
loss at any stop from a loss at a kill.
"""
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import boto3
from botocore.config import Config

ROUNDS = int(os.environ.get("ROUNDS", "20"))
STOP = signal.SIGTERM if "--term" in sys.argv[1:] else signal.SIGKILL
ROOT = os.path.join(os.path.dirname(__file__), "..", "..", ".tools", "dynamodb", "package", "lib")


def jar_dir():
    found = glob.glob(os.path.join(ROOT, "*", "DynamoDBLocal.jar"))
    if not found:
        sys.exit("no DynamoDBLocal.jar: run bash infra/install.sh")
    return os.path.dirname(found[0])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(db, port):
    d = jar_dir()
    p = subprocess.Popen(
        ["java", f"-Djava.library.path={d}/DynamoDBLocal_lib", "-jar", f"{d}/DynamoDBLocal.jar",
         "-disableTelemetry", "-port", str(port), "-sharedDb", "-dbPath", db],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return p
        except OSError:
            time.sleep(0.1)
    p.kill()
    sys.exit("DynamoDB Local did not start")


def client(port):
    return boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))


def round_(n):
    db = tempfile.mkdtemp(prefix="ddb-kill-")
    port = free_port()
    p = start(db, port)
    try:
        c = client(port)
        c.create_table(TableName="kill", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                       AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                       BillingMode="PAY_PER_REQUEST")
        acked, lock, stop = [], threading.Lock(), threading.Event()

        def writer(w):
            cw = client(port)
            i = 0
            while not stop.is_set():
                keys = [f"{w}-{i}"] if w < 2 else [f"{w}-{i}-a", f"{w}-{i}-b"]
                try:
                    if w < 2:
                        cw.put_item(TableName="kill", Item={"pk": {"S": keys[0]}})
                    else:
                        cw.transact_write_items(TransactItems=[
                            {"Put": {"TableName": "kill", "Item": {"pk": {"S": k}},
                                     "ConditionExpression": "attribute_not_exists(pk)"}} for k in keys])
                except Exception:
                    return
                with lock:
                    acked.extend(keys)
                i += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0 + (n % 5) * 0.3)
        p.send_signal(STOP)
        p.wait()
        stop.set()
        for t in threads:
            t.join()
        p = start(db, port)
        c = client(port)
        lost = [k for k in acked
                if "Item" not in c.get_item(TableName="kill", Key={"pk": {"S": k}}, ConsistentRead=True)]
        print(f"round {n}: {len(acked)} writes acknowledged before the {STOP.name}, {len(lost)} missing after the restart"
              + (f": {lost}" if lost else ""), flush=True)
        return lost
    finally:
        p.kill()
        p.wait()
        shutil.rmtree(db, ignore_errors=True)


def loopback_only():
    """Whether this network namespace has no interface but the loopback (run_loopback_only)."""
    return all(name == "lo" for _, name in socket.if_nameindex())


if __name__ == "__main__":
    if not loopback_only():
        sys.exit("DynamoDB Local listens on every interface: run this through run_loopback_only "
                 "(source infra/lib.sh)")
    for n in range(1, ROUNDS + 1):
        if round_(n):
            sys.exit(1)
    print(f"no acknowledged write lost in {ROUNDS} rounds stopped with {STOP.name}")
