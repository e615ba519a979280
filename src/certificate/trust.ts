// Which peers may set the certificate header: a header is only as trustworthy as the hop that set it.
import { BlockList, isIP } from 'node:net';

/** Compiles `trusted_proxies` (addresses and CIDRs, IPv4 and IPv6) into a membership test. */
export function createProxyTrust(entries: readonly string[]): (peer: string | undefined) => boolean {
  const list = new BlockList();
  for (const entry of entries) {
    const [address = '', bits, extra] = entry.split('/');
    const family = familyOf(address);
    if (family === undefined || extra !== undefined || (bits !== undefined && !/^\d{1,3}$/.test(bits))) {
      throw new Error(`trusted_proxies: "${entry}" is not an IP address or CIDR`);
    }
    if (bits === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(bits), family);
  }
  // BlockList checks an IPv4-mapped IPv6 peer (::ffff:127.0.0.1) against the IPv4 rules too.
  const check = (peer: string | undefined): boolean => {
    const family = peer === undefined ? undefined : familyOf(peer);
    return family !== undefined && list.check(peer as string, family);
  };
  // A check costs ~1 µs (it builds a SocketAddress); a sidecar sees few distinct peers, so
  // answers are remembered per address. Bounded: a flood of new addresses only empties it.
  const known = new Map<string, boolean>();
  return (peer) => {
    if (peer === undefined) return false;
    let trusted = known.get(peer);
    if (trusted === undefined) {
      trusted = check(peer);
      if (known.size >= MAX_REMEMBERED_PEERS) known.clear();
      known.set(peer, trusted);
    }
    return trusted;
  };
}

const MAX_REMEMBERED_PEERS = 4096;

function familyOf(address: string): 'ipv4' | 'ipv6' | undefined {
  const version = isIP(address);
  return version === 4 ? 'ipv4' : version === 6 ? 'ipv6' : undefined;
}
