#!/usr/bin/env bash
# Install nfp and run its main job on embedded defaults (SQLite + broker-less
# filesystem bus, no configuration): start the orchestrator, create a firewall
# network function through the RPC API and wait for ACTIVE, list it, delete it.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e .
export NFP_STATE_DIR="${NFP_STATE_DIR:-$(mktemp -d /tmp/nfp-quickstart.XXXXXX)}"
echo "state directory: $NFP_STATE_DIR"
nfp serve > "$NFP_STATE_DIR/nfp.log" 2>&1 &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  nfp nf list >/dev/null 2>&1 && break
  sleep 0.2
done
rules='{"config": [{"resource": "firewall", "resource_data": {"rules": [
  {"name": "web", "protocol": "tcp", "destination_ip_address": "198.18.0.0/24", "destination_port": 80, "action": "allow"},
  {"name": "ssh", "protocol": "tcp", "source_ip_address": "198.18.1.0/24", "destination_port": 22, "action": "allow"}]}}]}'
nf_id=$(nfp nf create --name quickstart-fw --service-type firewall \
          --flavor service_vendor=memory,device_type=static --service-config "$rules" --wait \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
nfp nf list
nfp nf show "$nf_id"
nfp nf delete "$nf_id" --wait
nfp status
echo "quickstart finished: the network function went PENDING_CREATE -> ACTIVE -> deleted"
