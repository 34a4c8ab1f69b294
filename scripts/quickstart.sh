#!/usr/bin/env bash
# Install nfp and run its main job on embedded defaults (SQLite + broker-less
# filesystem bus, no configuration):
#   1. start a pfSense simulator (a protocol-faithful appliance nfp ships) and
#      register it as a device, its API key stored through `nfp secret set`;
#   2. start the orchestrator, create a firewall network function through the
#      RPC API and wait until it is ACTIVE, which nfp reports only after reading
#      the rules back from the device;
#   3. show the rules as the appliance holds them, and nfp's diff (in sync);
#   4. delete the NF and show the appliance empty again;
#   5. as root, where network namespaces work: the same on a real nftables
#      firewall in a namespace, proven with packets (`nfp demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
# NFP_QUICKSTART_NO_INSTALL=1 / NFP_QUICKSTART_NO_DEMO=1: what the test of this script sets
if [ -z "${NFP_QUICKSTART_NO_INSTALL:-}" ]; then python3 -m pip install -q -e .; fi
export NFP_STATE_DIR="${NFP_STATE_DIR:-$(mktemp -d /tmp/nfp-quickstart.XXXXXX)}"
mkdir -p "$NFP_STATE_DIR"
echo "state directory: $NFP_STATE_DIR"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# 1. the appliance: a pfSense simulator with its own TLS certificate
api_key=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
nfp simulate pfsense --api-key "$api_key" --cert-dir "$NFP_STATE_DIR/sim" > "$NFP_STATE_DIR/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q "ca_file:" "$NFP_STATE_DIR/sim.log" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/^  port: //p' "$NFP_STATE_DIR/sim.log")
ca_file=$(sed -n 's/^  ca_file: //p' "$NFP_STATE_DIR/sim.log")
echo "pfSense simulator on 127.0.0.1:$port (certificate $ca_file)"

nfp db upgrade > /dev/null
# the API key goes in on stdin, never as an argument
printf '{"api_key": "%s"}' "$api_key" | nfp secret set pfsense-quickstart
nfp device register --id pfsense-quickstart --vendor pfsense --mgmt-ip 127.0.0.1 \
    --credentials-ref pfsense-quickstart --max-interfaces 64 \
    --extra "{\"port\": $port, \"ca_file\": \"$ca_file\"}"

# 2. the orchestrator
nfp serve > "$NFP_STATE_DIR/nfp.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do nfp nf list > /dev/null 2>&1 && break; sleep 0.2; done
rules='{"config": [{"resource": "firewall", "resource_data": {"rules": [
  {"name": "web", "protocol": "tcp", "destination_ip_address": "198.18.0.0/24", "destination_port": 80, "action": "allow"},
  {"name": "ssh", "protocol": "tcp", "source_ip_address": "198.18.1.0/24", "destination_port": 22, "action": "allow"}]}}]}'
nf_id=$(nfp nf create --name quickstart-fw --service-type firewall \
          --flavor service_vendor=pfsense,device_type=static --service-config "$rules" --wait \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
nfp nf list

# 3. what the appliance holds, read from the appliance itself, and nfp's diff
show_appliance() {
  python3 - "$port" "$ca_file" <<'EOF'
import json, ssl, sys, urllib.request
port, ca_file = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(f"https://127.0.0.1:{port}/_sim/state",
                            context=ssl.create_default_context(cafile=ca_file), timeout=10) as resp:
    state = json.load(resp)
rules = state["tables"]["firewall/rule"]
print(f"the appliance holds {len(rules)} firewall rule(s) (applied {state['applied']} time(s)):")
for rule in rules:
    print("  ", {k: rule[k] for k in ("tracker", "descr", "type", "protocol", "source",
                                      "destination", "destination_port") if k in rule})
EOF
}
show_appliance
nfp nf diff "$nf_id"

# 4. delete, and the appliance is empty again
nfp nf delete "$nf_id" --wait
show_appliance
nfp status

# 5. a real firewall in a network namespace, proven with packets
if [ -z "${NFP_QUICKSTART_NO_DEMO:-}" ] && [ "$(id -u)" = 0 ] && command -v nft > /dev/null \
   && ip netns list > /dev/null 2>&1; then
  nfp demo
else
  echo "(not root or no nftables: skipping the network-namespace demo; run 'sudo nfp demo')"
fi
echo "quickstart finished: a firewall NF went PENDING_CREATE -> ACTIVE on the pfSense simulator (rules read back) -> deleted"
