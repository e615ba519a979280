import { BlockList, isIPv4 } from 'node:net';

/** `trusted_proxies` compiled once into a `net.BlockList`; IPv4-mapped IPv6 peers match their IPv4 rules. */
export function createPeerTrust(cidrs: readonly string[]): (peer: string | undefined) => boolean {
  if (cidrs.length === 0) return () => false;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address = '', bits] = cidr.split('/');
    const family = isIPv4(address) ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(bits), family);
  }
  return (peer) => {
    if (!peer) return false;
    if (peer.startsWith('::ffff:') && isIPv4(peer.slice(7))) return list.check(peer.slice(7), 'ipv4');
    return list.check(peer, isIPv4(peer) ? 'ipv4' : 'ipv6');
  };
}
