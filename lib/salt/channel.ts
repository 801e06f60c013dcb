/**
 * The request channel to the master, whatever carries it: what the
 * dispatcher and the clients use of it. Salt's masters speak one of several
 * transports on ret_port (salt/transport/__init__.py: zeromq, tcp, ws); each
 * is one room behind this interface, and openRequestChannel()
 * (./transports.ts) picks it from the master's `transport` option.
 */

export interface RequestChannel {
  /**
   * Send a clear-text load; resolve with the master's decoded reply, whatever
   * it is (the clients read it). Rejects with an error whose `code` is one
   * of MASTER_NOT_ANSWERING_CODES (./errors.ts) when the master does not
   * answer within `timeoutMs` (else the channel's default), the connection
   * drops before the reply, or the channel is closed.
   */
  send(load: Record<string, unknown>, timeoutMs?: number): Promise<unknown>;
  /** Requests waiting for a reply. */
  readonly pending: number;
  /** Reject everything pending and release the connection. */
  close(): void;
}
