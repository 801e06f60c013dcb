/**
 * waitFor: the first event matching a tag on an EventBus, as a promise. The
 * server's clients subscribe with their own timers and abort handling; tests
 * and the bench want this simpler form.
 */
import type { EventBus, SaltEvent } from '../../lib/salt/event-bus.js';
import { EventBusClosedError, EventBusTimeoutError } from '../../lib/salt/errors.js';

/** waitFor() whose AbortSignal fired; `cause` is the signal's reason. */
export class AbortError extends Error {
  override name = 'AbortError';
}

/**
 * First event matching `tagOrPrefix` (as subscribe); EventBusTimeoutError
 * after timeoutMs; AbortError if signal aborts; EventBusClosedError if the
 * bus is or gets closed. Unsubscribes in every case.
 */
export function waitFor(bus: EventBus, tagOrPrefix: string, timeoutMs: number, signal?: AbortSignal): Promise<SaltEvent> {
  if (bus.isClosed) return Promise.reject(new EventBusClosedError('The event bus is closed'));
  if (signal?.aborted) return Promise.reject(new AbortError('Aborted', { cause: signal.reason }));
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (settle: () => void): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      bus.off('close', onClose);
      unsubscribe();
      settle();
    };
    const onAbort = (): void => finish(() => reject(new AbortError('Aborted', { cause: signal?.reason })));
    const onClose = (): void => finish(() => reject(new EventBusClosedError('The event bus was closed')));
    const unsubscribe = bus.subscribe(tagOrPrefix, (event) => finish(() => resolve(event)));
    const timer = setTimeout(
      () => finish(() => reject(new EventBusTimeoutError(`No event ${tagOrPrefix} within ${timeoutMs} ms`))),
      timeoutMs,
    );
    signal?.addEventListener('abort', onAbort, { once: true });
    bus.on('close', onClose);
  });
}
