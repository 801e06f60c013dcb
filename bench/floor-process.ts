/**
 * The floor: a bare node:http server that does only what any JSON API on
 * node:http must do for a request (read the body, JSON.parse it, answer a
 * fixed local_async-shaped JSON reply with Content-Type and Content-Length),
 * and nothing of ours. Its CPU per request, at the server's rate and
 * beside the same master load, is what this machine charges for node:http
 * and loopback TCP alone.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { serveParent } from './ipc.js';

const answer = JSON.stringify({ return: [{ jid: '20261122000000000000', minions: ['minion1'] }] });

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    JSON.parse(Buffer.concat(chunks).toString('utf8'));
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('Content-Length', Buffer.byteLength(answer));
    res.writeHead(200);
    res.end(answer);
  });
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

serveParent((message) => {
  switch (message.type) {
    case 'cpu': {
      const cpu = process.cpuUsage();
      return { cpuMicros: cpu.user + cpu.system };
    }
    case 'stop':
      server.close();
      server.closeAllConnections();
      setImmediate(() => process.exit(0));
      return {};
    default:
      throw new Error(`unknown request ${message.type}`);
  }
});
process.on('disconnect', () => process.exit(0));
process.send!({ type: 'ready', port: (server.address() as AddressInfo).port });
