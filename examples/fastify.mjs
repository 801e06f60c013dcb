import Fastify from 'fastify';
import { ConfigError, createHandler } from 'salt-rest-wsgi';

const app = Fastify({ logger: true });
let handler; // on $SALT_MASTER_CONFIG, else /etc/salt/master
try {
  handler = createHandler({ logger: app.log }); // pino fits as the logger
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`${err.message.split('\n')[0]}; set SALT_MASTER_CONFIG to the master's config file`);
  process.exit(2);
}
app.addHook('onClose', async () => handler.close());

// Every path under /salt goes to the handler as Node's own request and
// response; no Fastify body parsing there, the handler reads the body.
app.register(
  async (salt) => {
    salt.removeAllContentTypeParsers();
    salt.addContentTypeParser('*', (request, body, done) => done(null));
    const forward = (request, reply) => {
      reply.hijack();
      handler(request.raw, reply.raw);
    };
    salt.all('/', forward);
    salt.all('/*', forward);
  },
  { prefix: '/salt' },
);

await app.listen({ port: Number(process.env.PORT ?? 8001), host: '127.0.0.1' });
process.once('SIGTERM', () => app.close());
