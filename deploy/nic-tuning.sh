#!/usr/bin/env bash
# Tune a NIC for Tollgate's XDP data path: one queue per worker, RSS on the UDP 4-tuple so each
# media flow stays on one queue (one worker, one crypto state), IRQs pinned to the workers' CPUs,
# GRO/LRO off (frames must reach XDP as sent), larger rings.
#
# Usage: nic-tuning.sh [--dry-run] IFACE WORKERS CPU_LIST
#   e.g. nic-tuning.sh eth1 4 2,3,4,5
# Run it for both NICs with the same WORKERS and CPU_LIST as media.workers and media.cpus.
set -euo pipefail

dry=0
if [[ ${1:-} == --dry-run ]]; then dry=1; shift; fi
if [[ $# -ne 3 ]]; then
  sed -n '2,9p' "$0"
  exit 2
fi
iface=$1 workers=$2 cpus=$3
IFS=, read -r -a cpu_list <<<"$cpus"
if [[ ${#cpu_list[@]} -lt $workers ]]; then
  echo "need at least $workers CPUs, got ${#cpu_list[@]}" >&2
  exit 2
fi

run() {
  echo "+ $*"
  if [[ $dry -eq 0 ]]; then "$@"; fi
}

[[ -d /sys/class/net/$iface ]] || { echo "no interface $iface" >&2; exit 1; }

# 1. Channels: Tollgate binds one AF_XDP socket per queue, one worker per queue.
if ethtool -l "$iface" 2>/dev/null | grep -q Combined; then
  run ethtool -L "$iface" combined "$workers" || echo "warning: could not set channels" >&2
else
  run ethtool -L "$iface" rx "$workers" tx "$workers" || echo "warning: could not set channels" >&2
fi

# 2. RSS over source/destination address and port for UDP, so a flow never changes queue.
run ethtool -N "$iface" rx-flow-hash udp4 sdfn || echo "warning: driver has no UDP RSS setting" >&2
run ethtool -N "$iface" rx-flow-hash udp6 sdfn || true
run ethtool -X "$iface" equal "$workers" || true

# 3. Offloads that merge or split frames before XDP sees them.
run ethtool -K "$iface" gro off lro off || true

# 4. Bigger rings absorb bursts while a worker is busy.
max_rx=$(ethtool -g "$iface" 2>/dev/null | awk '/Pre-set maximums/{p=1} p&&/^RX:/{print $2; exit}')
if [[ -n ${max_rx:-} && $max_rx =~ ^[0-9]+$ ]]; then
  run ethtool -G "$iface" rx "$max_rx" tx "$max_rx" || true
fi

# 5. IRQ affinity: queue i's interrupt on worker i's CPU (stop irqbalance from moving them).
if systemctl is-active --quiet irqbalance 2>/dev/null; then
  echo "note: irqbalance is running; ban these IRQs (IRQBALANCE_BANNED_CPULIST=$cpus) or stop it"
fi
i=0
for irq in $(awk -v ifc="$iface" '$0 ~ ifc {sub(":","",$1); print $1}' /proc/interrupts); do
  cpu=${cpu_list[$((i % workers))]}
  if [[ $dry -eq 1 ]]; then
    echo "+ echo $cpu > /proc/irq/$irq/smp_affinity_list"
  else
    echo "$cpu" >"/proc/irq/$irq/smp_affinity_list" || echo "warning: IRQ $irq" >&2
  fi
  i=$((i + 1))
done
echo "$iface: $workers queues, IRQs on CPUs $cpus"
