export type Bounded<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly why: 'timeout' | 'aborted' };

/**
 * Runs `work` under one deadline and the callers' abort signals, and settles as soon as either
 * fires, even when the client behind `work` takes no signal (its late answer is then ignored). A
 * rejection of `work` is passed on for the destination to classify.
 *
 * One controller per attempt: AbortSignal.timeout plus AbortSignal.any per send cost about ten times
 * as much (a timer that outlives the request, dependents piling up on long-lived signals) and showed
 * in the benchmark's profile.
 */
export async function withDeadline<T>(
  work: (signal: AbortSignal) => Promise<T>,
  timeoutMs: number,
  signals: readonly AbortSignal[],
): Promise<Bounded<T>> {
  const controller = new AbortController();
  let why: 'timeout' | 'aborted' = 'aborted';
  let stop: (() => void) | undefined;
  const stopped = new Promise<Bounded<T>>((resolve) => {
    stop = () => resolve({ ok: false, why });
  });
  const abort = () => {
    controller.abort();
    stop?.();
  };
  const deadline = setTimeout(() => {
    why = 'timeout';
    abort();
  }, timeoutMs);
  for (const signal of signals) {
    if (signal.aborted) abort();
    else signal.addEventListener('abort', abort, { once: true });
  }
  try {
    if (controller.signal.aborted) return { ok: false, why };
    const running = work(controller.signal);
    // A late rejection after the deadline won must not surface as an unhandled rejection.
    running.catch(() => {});
    return await Promise.race([running.then((value): Bounded<T> => ({ ok: true, value })), stopped]);
  } finally {
    clearTimeout(deadline);
    for (const signal of signals) signal.removeEventListener('abort', abort);
  }
}
