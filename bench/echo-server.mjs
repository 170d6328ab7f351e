// The baseline for `npm run bench`: a bare fastify route that parses the same
// JSON body a trade carries and echoes it back. No Redis, no PostgreSQL.
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.post('/trade', async (req) => req.body);
app.get('/health', async () => ({ status: 'ok' }));
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
process.stdout.write(`listening ${app.server.address().port}\n`);
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
