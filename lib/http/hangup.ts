/**
 * The request's hang-up as an AbortSignal, made on first use: an
 * AbortController costs several µs to create, and only items that wait on
 * their job (netapi.waitsForJob) take one.
 */
export class Hangup {
  private controller: AbortController | undefined;
  happened = false;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.happened) this.controller.abort();
    }
    return this.controller.signal;
  }

  hangUp(): void {
    this.happened = true;
    this.controller?.abort();
  }
}
