#!/usr/bin/env python3
"""Writes a deterministic manifest tree for the throughput benchmarks.

Usage: gen-tree.py SRC MIB [BUNDLES]

SRC/bundles/b00 … b<BUNDLES-1>/ get about MIB MiB of YAML in total: files of ~256 KiB,
each holding Deployments, Services and ConfigMaps whose names, images, labels and data
vary (hex tokens from a seeded PRNG), so the text compresses like real manifests (~5-7x
with gzip) rather than like a repeated string. Same arguments, same bytes.
"""
import os
import random
import sys

FILE_BYTES = 256 * 1024


def deployment(r, i):
    app = f"app-{i:06d}-{r.getrandbits(32):08x}"
    env = "".join(
        f"        - name: VAR_{k}\n          value: \"{r.getrandbits(64):016x}\"\n" for k in range(r.randint(2, 6))
    )
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}
  labels:
    app.kubernetes.io/name: {app}
    app.kubernetes.io/part-of: fleet-{i % 17}
    team: team-{r.randint(1, 40)}
spec:
  replicas: {r.randint(1, 5)}
  selector:
    matchLabels:
      app.kubernetes.io/name: {app}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {app}
      annotations:
        checksum/config: "{r.getrandbits(128):032x}"
    spec:
      containers:
      - name: main
        image: registry.example.com/{app}@sha256:{r.getrandbits(256):064x}
        ports:
        - containerPort: {r.randint(1024, 65535)}
        env:
{env}        resources:
          requests: {{cpu: {r.randint(10, 500)}m, memory: {r.randint(16, 512)}Mi}}
          limits: {{cpu: {r.randint(500, 2000)}m, memory: {r.randint(512, 2048)}Mi}}
        readinessProbe:
          httpGet: {{path: /healthz, port: http}}
          periodSeconds: {r.randint(5, 30)}
---
apiVersion: v1
kind: Service
metadata:
  name: {app}
spec:
  selector:
    app.kubernetes.io/name: {app}
  ports:
  - name: http
    port: 80
    targetPort: {r.randint(1024, 65535)}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {app}-config
data:
  site: "${{cluster.name}}"
  settings.ini: |
""" + "".join(f"    key_{k} = {r.getrandbits(48):012x}\n" for k in range(r.randint(5, 20)))


def main():
    src, mib = sys.argv[1], int(sys.argv[2])
    bundles = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    r = random.Random(20240609)
    total, target, i, f = 0, mib << 20, 0, 0
    while total < target:
        d = os.path.join(src, "bundles", f"b{f % bundles:02d}", f"part-{(f // bundles) // 100:03d}")
        os.makedirs(d, exist_ok=True)
        docs = []
        size = 0
        while size < FILE_BYTES and total + size < target:
            doc = deployment(r, i)
            docs.append(doc)
            size += len(doc) + 4
            i += 1
        text = "---\n".join(docs)
        with open(os.path.join(d, f"m-{f:05d}.yaml"), "w") as out:
            out.write(text)
        total += len(text)
        f += 1


if __name__ == "__main__":
    main()
