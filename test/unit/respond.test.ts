import t from 'tap';
import { errorResponse } from '../../src/respond.js';
import { GatewayError } from '../../src/errors.js';

t.test('RFC 6750 challenges', async (t) => {
  const missing = errorResponse(new GatewayError('missing_token', 'bearer token required'), 'certificate_bound_token', 'bank');
  t.equal(missing.status, 401);
  t.equal(missing.headers['www-authenticate'], 'Bearer realm="bank"', 'no error code without credentials');
  t.equal(missing.headers['cache-control'], 'no-store');

  const mismatch = errorResponse(new GatewayError('certificate_mismatch', 'does not "match"\n'), 'certificate_bound_token', 'bank');
  t.equal(mismatch.status, 401);
  t.equal(mismatch.headers['www-authenticate'], 'Bearer realm="bank", error="invalid_token", error_description="does not ?match??"');
  t.same(JSON.parse(mismatch.body), { error: 'invalid_token', error_description: 'does not ?match??' });

  const scope = errorResponse(new GatewayError('insufficient_scope', 'x', { scope: ['a', 'b'] }), 'certificate_bound_token', 'r');
  t.equal(scope.status, 403);
  t.match(scope.headers['www-authenticate'], /error="insufficient_scope", error_description="x", scope="a b"$/);

  const bad = errorResponse(new GatewayError('malformed_token', 'm'), 'certificate_bound_token', 'r');
  t.equal(bad.status, 400);
  t.match(bad.headers['www-authenticate'], /error="invalid_request"/);
});

t.test('status codes and extra headers', async (t) => {
  const as = errorResponse(new GatewayError('as_unavailable', 'down', { retryAfter: 5 }), 'certificate_bound_token', 'r');
  t.equal(as.status, 503);
  t.equal(as.headers['retry-after'], '5');
  t.equal(as.headers['www-authenticate'], undefined);
  const allow = errorResponse(new GatewayError('method_not_allowed', 'no', { allow: ['GET', 'HEAD'] }), undefined, 'r');
  t.equal(allow.status, 405);
  t.equal(allow.headers.allow, 'GET, HEAD');
  t.equal(errorResponse(new GatewayError('no_route', 'x'), undefined, 'r').status, 404);
  t.equal(errorResponse(new GatewayError('upstream_unavailable', 'x'), 'none', 'r').status, 502);
  t.equal(errorResponse(new GatewayError('upstream_timeout', 'x'), 'none', 'r').status, 504);
  t.equal(errorResponse(new GatewayError('certificate_header_repeated', 'x'), 'certificate_bound_token', 'r').status, 400);
});

t.test('token endpoint routes speak RFC 6749 §5.2', async (t) => {
  const missing = errorResponse(new GatewayError('transport_certificate_missing', 'transport certificate not found in the request'), 'mtls', 'r');
  t.equal(missing.status, 400);
  t.same(JSON.parse(missing.body), { error: 'invalid_request', error_description: 'transport certificate not found in the request' });
  t.equal(missing.headers['www-authenticate'], undefined);
  const malformed = errorResponse(new GatewayError('certificate_malformed', 'x'), 'mtls', 'r');
  t.equal(malformed.status, 400);
  t.equal(JSON.parse(malformed.body).error, 'invalid_client');
  t.equal(errorResponse(new GatewayError('certificate_malformed', 'x'), 'certificate_bound_token', 'r').status, 401);
});
