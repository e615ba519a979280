// Shared by the two shared-state suites (in-process runtimes and real processes): polling, and
// issue 14's revocation fan-out check for replicas of either kind.
import type { Test } from 'tap';

/** Polls `check` every 20 ms until it holds; how long that took. Throws after `ms`. */
export async function until(what: string, check: () => Promise<boolean>, ms: number): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Date.now() - started;
}

/** One revocation case: its kind, the POST /revocations body, and the token (with the certificate it is bound to) it must refuse. */
export type RevocationCase<C> = readonly [kind: string, body: unknown, token: string, cert: C];

/**
 * For each case: the token passes on every replica (so each has it cached), is revoked through
 * `revoke` (202), and every one of `others` refuses it within 1 s of the 202, without the
 * authorization server being asked again.
 */
export async function checkFanOut<R, C>(
  t: Test,
  o: {
    readonly replicas: readonly R[];
    readonly others: readonly R[];
    readonly cases: ReadonlyArray<RevocationCase<C>>;
    readonly api: (replica: R, token: string, cert: C) => Promise<{ status: number }>;
    readonly revoke: (body: unknown) => Promise<{ status: number }>;
    readonly introspected: (token: string) => number;
  },
): Promise<void> {
  for (const [kind, body, token, cert] of o.cases) {
    for (const r of o.replicas) t.equal((await o.api(r, token, cert)).status, 200, `${kind}: cached on every replica first`);
    const calls = o.introspected(token);
    t.equal((await o.revoke(body)).status, 202, kind);
    for (const r of o.others) {
      const waited = await until(`${kind} refused`, async () => (await o.api(r, token, cert)).status === 401, 1000);
      t.ok(waited <= 1000, `${kind}: refused after ${waited} ms`);
    }
    t.equal(o.introspected(token), calls, `${kind}: the server was never asked`);
  }
}
