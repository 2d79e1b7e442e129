#!/usr/bin/python3
"""A libtorrent DHT node on loopback, driven by the interop tests.

It reads one JSON command per line on stdin and writes one JSON answer per
line on stdout. Everything that could reach past loopback is off: no
bootstrap routers (so no DNS lookups either), no local service discovery,
no UPnP, no NAT-PMP; it listens on the loopback address it is given and
knows only the nodes the test adds.

Commands ({"op": ...}), answered with {"error": ...} on failure:
  add_node       addr               -> {}
  get_peers      ih                 -> {peers}   (a lookup)
  announce       ih, dir            -> {port}    (adds the torrent, saved in dir)
  put_immutable  v                  -> {target, stored}  (v bencoded)
  get_immutable  target             -> {v}       (bencoded)
  put_mutable    sk, k, v, salt     -> {seq, stored}
  get_mutable    k, salt            -> {v, seq}  (bencoded)
  sample         addr, target       -> {num, interval, samples}
  quit
Byte strings travel as hex.
"""

import json
import sys
import time

import libtorrent as lt


def main():
    ip = sys.argv[1]
    settings = {
        "listen_interfaces": ip + ":0",
        "outgoing_interfaces": ip,
        "enable_dht": True,
        "dht_bootstrap_nodes": "",
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_tcp": False,
        "enable_outgoing_tcp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_ignore_dark_internet": False,
        "dht_block_ratelimit": 100000,
        "dht_prefer_verified_node_ids": False,
        "alert_mask": lt.alert.category_t.all_categories,
    }
    ses = lt.session(settings)
    port = wait_for(ses, lambda a: isinstance(a, lt.listen_succeeded_alert)
                    and a.socket_type == lt.socket_type_t.udp, 30).port
    out({"port": port})
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op == "quit":
                break
            elif op == "add_node":
                host, p = split(cmd["addr"])
                ses.add_dht_node((host, p))
                out({})
            elif op == "sample":
                host, p = split(cmd["addr"])
                ses.dht_sample_infohashes((host, p), lt.sha1_hash(bytes.fromhex(cmd["target"])))
                a = wait_for(ses, lambda a: isinstance(a, lt.dht_sample_infohashes_alert), 30)
                out({"num": a.num_infohashes, "interval": int(a.interval.total_seconds()),
                     "samples": [str(h) for h in a.samples]})
            elif op == "get_peers":
                ih = lt.sha1_hash(bytes.fromhex(cmd["ih"]))
                ses.dht_get_peers(ih)
                a = wait_for(ses, lambda a: isinstance(a, lt.dht_get_peers_reply_alert)
                             and str(a.info_hash) == cmd["ih"], 60)
                out({"peers": ["%s:%d" % p for p in a.peers()]})
            elif op == "announce":
                # The bindings do not expose dht_announce's flags: a torrent
                # added by magnet link (no trackers) is announced over the
                # DHT on the session's listen port instead.
                atp = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + cmd["ih"])
                atp.save_path = cmd["dir"]
                ses.add_torrent(atp)
                out({"port": ses.listen_port()})
            elif op == "put_immutable":
                # v is bencoded; the bindings put a Python value.
                target = ses.dht_put_immutable_item(lt.bdecode(bytes.fromhex(cmd["v"])))
                a = wait_for(ses, lambda a: isinstance(a, lt.dht_put_alert), 60)
                out({"target": str(target), "stored": a.num_success})
            elif op == "get_immutable":
                ses.dht_get_immutable_item(lt.sha1_hash(bytes.fromhex(cmd["target"])))
                a = wait_for(ses, lambda a: isinstance(a, lt.dht_immutable_item_alert), 60)
                out({"v": lt.bencode(item_value(a.item)).hex()})
            elif op == "put_mutable":
                # sk is libtorrent's 64-byte expanded secret key; v the
                # string the item holds (libtorrent bencodes it).
                sk, pk = bytes.fromhex(cmd["sk"]), bytes.fromhex(cmd["k"])
                ses.dht_put_mutable_item(sk, pk, bytes.fromhex(cmd["v"]), bytes.fromhex(cmd["salt"]))
                a = wait_for(ses, lambda a: isinstance(a, lt.dht_put_alert), 60)
                out({"seq": a.seq, "stored": a.num_success})
            elif op == "get_mutable":
                ses.dht_get_mutable_item(bytes.fromhex(cmd["k"]), bytes.fromhex(cmd["salt"]))
                a = wait_for(ses, lambda a: isinstance(a, lt.dht_mutable_item_alert) and a.authoritative, 60)
                out({"v": lt.bencode(item_value(a.item)).hex(), "seq": a.seq})
            else:
                out({"error": "unknown op " + op})
        except Exception as e:  # the test reads the error
            out({"error": "%s: %s" % (type(e).__name__, e)})


def item_value(item):
    """The value of an item alert: some bindings give the whole item."""
    if isinstance(item, dict):
        for k in ("value", b"value"):
            if k in item:
                return item[k]
    return item


def split(addr):
    host, _, p = addr.rpartition(":")
    return host, int(p)


def wait_for(ses, match, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ses.wait_for_alert(200)
        for a in ses.pop_alerts():
            if match(a):
                return a
    raise TimeoutError("no matching alert within %ds" % timeout)


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
