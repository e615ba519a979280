import { errors as undiciErrors } from 'undici';

export type UpstreamErrorKind = 'refused' | 'reset' | 'timeout' | 'overloaded';

/** What an undici error says about the upstream. */
export function classify(error: unknown): UpstreamErrorKind {
  if (error instanceof undiciErrors.HeadersTimeoutError || error instanceof undiciErrors.ConnectTimeoutError || error instanceof undiciErrors.BodyTimeoutError) {
    return 'timeout';
  }
  const code = (error as { code?: string } | null)?.code;
  return code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' ? 'refused' : 'reset';
}
