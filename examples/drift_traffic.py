"""Send traffic to a served model, then drifted traffic, and watch the gateway notice.

Usage (see the README, "Serve a release")::

    python examples/drift_traffic.py --url http://127.0.0.1:8080 --model breast-cancer \
        --token $CLIENT_TOKEN --monitor-token $BASTION_TOKEN \
        --data bastion-demo/breast_cancer/data/test.csv --target diagnosis

It sends the test rows as they are (no drift), then the same rows with their first feature
scaled by 1.8 (drift), and prints the gateway's drift snapshot after each phase. Within one
evaluation interval of `bastion serve` (10 s) a `drift` alert is raised: an audit event
(`bastion audit export`), a log line and, with `--webhook`, a signed webhook call.
"""

from __future__ import annotations

import argparse
import time

import httpx
import pandas as pd


def send(client: httpx.Client, url: str, model: str, token: str, rows: pd.DataFrame) -> None:
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(rows.shape),
                "datatype": "FP64",
                "data": rows.to_numpy(dtype=float).ravel().tolist(),
            }
        ]
    }
    answer = client.post(
        f"{url}/v2/models/{model}/infer", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    answer.raise_for_status()


def snapshot(client: httpx.Client, url: str, model: str, token: str) -> dict[str, object]:
    answer = client.get(
        f"{url}/v2/models/{model}/monitor", headers={"Authorization": f"Bearer {token}"}
    )
    answer.raise_for_status()
    data: dict[str, object] = answer.json()
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--model", default="breast-cancer")
    parser.add_argument("--token", required=True, help="a client token (role viewer or more)")
    parser.add_argument("--monitor-token", required=True, help="an approver or admin token")
    parser.add_argument("--data", required=True, help="CSV of rows the model accepts")
    parser.add_argument("--target", help="column to drop (the label)")
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    frame = pd.read_csv(args.data)
    if args.target:
        frame = frame.drop(columns=[args.target])
    with httpx.Client(timeout=30) as client:
        for _ in range(args.batches):
            send(client, args.url, args.model, args.token, frame)
        calm = snapshot(client, args.url, args.model, args.monitor_token)
        print("as trained:", calm.get("drifted_features"), "rows", calm.get("n_rows"))
        drifted = frame.copy()
        first = drifted.columns[0]
        drifted[first] = drifted[first] * 1.8
        for _ in range(args.batches * 3):
            send(client, args.url, args.model, args.token, drifted)
        time.sleep(1)
        moved = snapshot(client, args.url, args.model, args.monitor_token)
        print(f"after scaling {first!r} by 1.8:", moved.get("drifted_features"))
        print("an alert fires at the next evaluation (10 s): bastion audit export | grep alert")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
