import express from 'express';

// Baseline for the app API: Express 5 parsing a JSON POST and answering 202,
// nothing else. The gateway's app API is measured against this on the same machine.
const app = express();
app.post('/api/v1/tickets', express.json({ limit: '1mb' }), (req, res) => {
  res.status(202).json({ id: String((req.body as { clientMessageId?: string }).clientMessageId), number: '20260101-000001', respondBy: new Date().toISOString() });
});
const server = app.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as { port: number }).port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
