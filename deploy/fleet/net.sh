# The fleet's network, sourced by deploy/fleet/fleet.sh: hosts are network namespaces on
# one bridge, links can be taken down and paths cut with nftables drop rules.
#
# Everything is named connxt-*: a namespace per host (connxt-db, connxt-api1, ...) and one
# more, connxt-switch, that holds the bridge connxt-br0 and the switch's end of every host's
# link (a veth pair: connxt-<host> on the switch, eth0 in the host). The switch has a
# namespace of its own rather than the machine's: the machine's firewall never sees the
# fleet's frames (Docker's FORWARD policy, with br_netfilter, would drop bridged traffic),
# the fleet's drop rules (the nftables table connxt-fleet) never touch the machine's, and
# deleting the namespaces deletes every link and rule with them. No host has a route out of
# 10.203.0.0/24: the fleet's traffic stays between its own namespaces.

FLEET_SUBNET=10.203.0
FLEET_PREFIX=connxt
SWITCH_NS=$FLEET_PREFIX-switch
BRIDGE=$FLEET_PREFIX-br0
NFT_TABLE=$FLEET_PREFIX-fleet

# host -> last octet of its address. Interface names are at most 15 characters:
# "connxt-" and the host's name must fit (connxt-internet is exactly 15).
declare -A HOST_OCTET=(
    [lb]=5
    [db]=10
    [api1]=11
    [api2]=12
    [worker1]=21
    [worker2]=22
    [worker3]=23
    [beat]=30
    [internet]=40
    [load]=50
    [mon]=60
)
FLEET_HOSTS=(db lb api1 api2 worker1 worker2 worker3 beat internet load mon)
API_HOSTS=(api1 api2)
WORKER_HOSTS=(worker1 worker2 worker3)

addr() { echo "$FLEET_SUBNET.${HOST_OCTET[$1]:?unknown host $1}"; }
netns() { echo "$FLEET_PREFIX-$1"; }

known_host() {
    [ -n "${HOST_OCTET[$1]:-}" ] || die "unknown host '$1' (hosts: ${FLEET_HOSTS[*]})"
}

# Every namespace of ours, also those of a fleet that crashed half-made.
fleet_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep "^$FLEET_PREFIX-" || true; }

net_up() {
    ip netns add "$SWITCH_NS"
    ip -n "$SWITCH_NS" link set lo up
    ip -n "$SWITCH_NS" link add "$BRIDGE" type bridge
    ip -n "$SWITCH_NS" link set "$BRIDGE" up
    local host ns
    for host in "${FLEET_HOSTS[@]}"; do
        ns=$(netns "$host")
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # Made in the switch's namespace with its peer born in the host's: nothing of the
        # pair ever exists in the machine's own namespace, not even for a moment.
        ip -n "$SWITCH_NS" link add "$FLEET_PREFIX-$host" type veth peer name eth0 netns "$ns"
        ip -n "$SWITCH_NS" link set "$FLEET_PREFIX-$host" master "$BRIDGE" up
        ip -n "$ns" addr add "$(addr "$host")/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
    nft_setup
}

# The drop rules live in the switch, on the bridge's forward hook: a cut path loses its
# packets silently, both ways, as a failed switch port or a firewall would; no RST, no FIN.
nft_setup() {
    ip netns exec "$SWITCH_NS" nft -f - <<EOF
table bridge $NFT_TABLE {
    chain forward {
        type filter hook forward priority 0; policy accept;
    }
}
EOF
}

link_set() {
    local host=$1 state=$2
    known_host "$host"
    case "$state" in up | down) ;; *) die "link $host: up or down, not '$state'" ;; esac
    ip -n "$SWITCH_NS" link set "$FLEET_PREFIX-$host" "$state"
}

cut_rule_comment() { echo "cut $1 $2"; }

cut_path() {
    local a=$1 b=$2
    known_host "$a"
    known_host "$b"
    local comment
    comment=$(cut_rule_comment "$a" "$b")
    heal_path "$a" "$b" # one rule pair per path, however often it is cut
    ip netns exec "$SWITCH_NS" nft add rule bridge "$NFT_TABLE" forward \
        ip saddr "$(addr "$a")" ip daddr "$(addr "$b")" drop comment "\"$comment\""
    ip netns exec "$SWITCH_NS" nft add rule bridge "$NFT_TABLE" forward \
        ip saddr "$(addr "$b")" ip daddr "$(addr "$a")" drop comment "\"$comment\""
}

# Without hosts: every cut healed.
heal_path() {
    local pattern="cut "
    if [ $# -eq 2 ]; then
        known_host "$1"
        known_host "$2"
        pattern=$(cut_rule_comment "$1" "$2")
    fi
    local handle
    for handle in $(ip netns exec "$SWITCH_NS" nft -a list chain bridge "$NFT_TABLE" forward |
        awk -v p="comment \"$pattern" 'index($0, p) {print $NF}'); do
        ip netns exec "$SWITCH_NS" nft delete rule bridge "$NFT_TABLE" forward handle "$handle"
    done
}

net_status() {
    local host state
    for host in "${FLEET_HOSTS[@]}"; do
        state=$(ip -n "$SWITCH_NS" -o link show "$FLEET_PREFIX-$host" 2>/dev/null |
            grep -o 'state [A-Z]*' || echo "state ABSENT")
        printf '  %-9s %-14s link %s\n' "$host" "$(addr "$host")" "${state#state }"
    done
    ip netns exec "$SWITCH_NS" nft list chain bridge "$NFT_TABLE" forward 2>/dev/null |
        grep -o 'comment "cut [^"]*"' | sed 's/comment "\(.*\)"/  \1 (dropped both ways)/' |
        sort -u || true
}

# Whatever namespaces, links and tables of ours exist, also after a crash: found by name.
net_down() {
    local ns
    for ns in $(fleet_namespaces); do
        ip netns delete "$ns" 2>/dev/null || true
    done
    # Nothing is made in the machine's namespace; should an interrupted or older set-up have
    # left a link or a table there, it goes too.
    local link
    for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 |
        grep "^$FLEET_PREFIX-" || true); do
        ip link delete "$link" 2>/dev/null || true
    done
    if command -v nft >/dev/null 2>&1; then
        local family table
        while read -r _ family table; do
            [ "${table#"$FLEET_PREFIX"-}" != "$table" ] && nft delete table "$family" "$table"
        done < <(nft list tables 2>/dev/null || true)
    fi
}
