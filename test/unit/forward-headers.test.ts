import t from 'tap';
import { clientResponseHeaders, createDropTable, switchingProtocolsHeaders, upstreamRequestHeaders, type ForwardedHeaderInput, type HeaderList } from '../../src/forward/headers.js';

/** A header list as an object, a repeated name as a list: what the upstream would see. */
function headerObject(list: HeaderList): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i] as string;
    const value = list[i + 1] as string;
    const prior = out[name];
    out[name] = prior === undefined ? value : [...(typeof prior === 'string' ? [prior] : prior), value];
  }
  return out;
}

const base: ForwardedHeaderInput = {
  incoming: {},
  drop: createDropTable(['authorization', 'x-certbound-client-id']),
  add: ['x-fapi-interaction-id', 'id-1'],
  peer: '10.0.0.9',
  peerTrusted: false,
  proto: 'https',
};
const forwarded = (input: Partial<ForwardedHeaderInput>) => upstreamRequestHeaders({ ...base, ...input });

t.test('the list the upstream receives: name, value pairs, certbound’s own headers first', async (t) => {
  const list = forwarded({ incoming: { host: 'api.bank', accept: 'application/json', authorization: 'Bearer x', 'x-certbound-client-id': 'spoofed' } });
  t.same(list, ['x-fapi-interaction-id', 'id-1', 'x-forwarded-for', '10.0.0.9', 'x-forwarded-proto', 'https', 'x-forwarded-host', 'api.bank', 'accept', 'application/json']);
});

t.test('every x-certbound-* header is dropped, configured or not', async (t) => {
  const list = forwarded({ incoming: { 'x-certbound-roles': 'forged', 'x-certbound-anything': 'forged', 'x-certbound': 'kept: not under the prefix' } });
  t.same(headerObject(list)['x-certbound-roles'], undefined);
  t.same(headerObject(list)['x-certbound-anything'], undefined);
  t.equal(headerObject(list)['x-certbound'], 'kept: not under the prefix');
});

t.test('a name whose `_` spelling aliases a protected header (CGI, WSGI, PHP) is dropped, even from a trusted proxy', async (t) => {
  const incoming = {
    x_certbound_client_id: 'forged', x_forwarded_for: 'forged', x_forwarded_host: 'evil', 'x-forwarded_proto': 'http', x_real_ip: '6.6.6.6',
    x_original_url: '/admin', x_http_method_override: 'DELETE', x_fapi_interaction_id: 'forged', x_certbound_roles: 'forged',
    authorization_: 'kept: not an alias', x_custom_header: 'kept', 'x-kept_too': 'kept',
  };
  for (const peerTrusted of [false, true]) {
    const out = headerObject(forwarded({ incoming, peerTrusted }));
    t.same(Object.keys(out).filter((n) => n.includes('_')).sort(), ['authorization_', 'x-kept_too', 'x_custom_header'], `trusted: ${peerTrusted}`);
    t.equal(out['x-forwarded-for'], '10.0.0.9');
  }
  // A configured protected name with `_` protects its `-` spelling too.
  const drop = createDropTable(['x_client_id']);
  const out = headerObject(forwarded({ drop, incoming: { 'x-client-id': 'forged', x_client_id: 'forged' } }));
  t.equal(out['x-client-id'], undefined);
  t.equal(out.x_client_id, undefined);
});

t.test('a 101 keeps only what a 101 needs: hop-by-hop and Connection-listed headers removed', async (t) => {
  const upstream = {
    connection: 'Upgrade, keep-alive, x-hop', upgrade: 'websocket', 'keep-alive': 'timeout=5', 'proxy-connection': 'keep-alive',
    'x-hop': 'secret', 'sec-websocket-accept': 'abc=', 'x-app': 'yes',
  };
  t.same(switchingProtocolsHeaders(upstream), { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-accept': 'abc=', 'x-app': 'yes' });
});

t.test('dropped: hop-by-hop, Connection-listed, rewrites, the client’s interaction id; client-address headers unless trusted', async (t) => {
  const incoming = {
    connection: 'close, x-secret', 'x-secret': '1', te: 'trailers', 'transfer-encoding': 'chunked', expect: '100-continue',
    'x-original-url': '/admin', 'x-http-method-override': 'DELETE', 'x-fapi-interaction-id': 'client-made', forwarded: 'for=6.6.6.6',
    'x-real-ip': '6.6.6.6', 'x-kept': 'yes',
  };
  const untrusted = headerObject(forwarded({ incoming }));
  t.same(Object.keys(untrusted).sort(), ['x-fapi-interaction-id', 'x-forwarded-for', 'x-forwarded-proto', 'x-kept']);
  t.equal(untrusted['x-fapi-interaction-id'], 'id-1', 'only certbound’s interaction id');
  const trusted = headerObject(forwarded({ incoming, peerTrusted: true }));
  t.equal(trusted['x-real-ip'], '6.6.6.6', 'kept from a trusted proxy');
});

t.test('X-Forwarded-*: replaced for an untrusted peer, extended from a trusted proxy', async (t) => {
  const incoming = { host: 'gw.local', 'x-forwarded-for': '1.2.3.4', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'api.bank', 'x-forwarded-port': '443' };
  const untrusted = headerObject(forwarded({ incoming }));
  t.same([untrusted['x-forwarded-for'], untrusted['x-forwarded-proto'], untrusted['x-forwarded-host'], untrusted['x-forwarded-port']], ['10.0.0.9', 'https', 'gw.local', undefined]);
  const trusted = headerObject(forwarded({ incoming, peerTrusted: true }));
  t.same([trusted['x-forwarded-for'], trusted['x-forwarded-proto'], trusted['x-forwarded-host']], ['1.2.3.4, 10.0.0.9', 'http', 'api.bank']);
});

t.test('a header that arrived as a list (set-cookie) goes out one line per value', async (t) => {
  const list = forwarded({ incoming: { 'set-cookie': ['a=1', 'b=2'] } });
  t.same(list.slice(-4), ['set-cookie', 'a=1', 'set-cookie', 'b=2']);
  t.same(headerObject(list)['set-cookie'], ['a=1', 'b=2']);
  t.same(headerObject(['x', '1', 'x', '2', 'x', '3']).x, ['1', '2', '3']);
});

t.test('Connection and Upgrade are hop-by-hop: never forwarded (the tunnel, undici, writes its own for a WebSocket)', async (t) => {
  const incoming = { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'k' };
  const out = headerObject(forwarded({ incoming }));
  t.equal(out.upgrade, undefined);
  t.equal(out.connection, undefined);
  t.equal(out['sec-websocket-key'], 'k');
});

t.test('response headers: hop-by-hop and Connection-listed removed', async (t) => {
  t.same(clientResponseHeaders({ connection: 'keep-alive, x-hop', 'x-hop': '1', 'keep-alive': 'timeout=5', 'content-type': 'text/plain', 'x-none': undefined }), { 'content-type': 'text/plain' });
});
