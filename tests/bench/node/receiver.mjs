// The reference receiver that the ingest benchmark measures beside closegate:
// a Node webhook receiver built on @octokit/webhooks that stores each delivery
// with better-sqlite3, one synchronous (fsynced) commit per request.
//
//   POST /hook  -> 401 bad signature, 400 bad JSON, 202 stored
//
// Env: SECRET (webhook secret), DB (sqlite path), PORT (0 = any free port).
// Prints exactly one line, `listening on <port>`, once it is listening.
import http from "node:http";
import Database from "better-sqlite3";
import { Webhooks } from "@octokit/webhooks";

const webhooks = new Webhooks({ secret: process.env.SECRET });

const db = new Database(process.env.DB);
db.pragma("journal_mode = WAL");
db.pragma("synchronous = FULL"); // acknowledged means on disk, as in closegate
db.exec("CREATE TABLE IF NOT EXISTS deliveries (delivery TEXT PRIMARY KEY, body BLOB)");
const insert = db.prepare(
  "INSERT INTO deliveries (delivery, body) VALUES (?, ?) ON CONFLICT DO NOTHING",
);

function reply(res, status) {
  res.writeHead(status, { "content-type": "text/plain" }).end();
}

async function handle(req, res) {
  if (req.method !== "POST" || req.url !== "/hook") return reply(res, 404);
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  const text = body.toString("utf8");

  // verify() is async and throws on an empty payload or missing signature.
  const signature = req.headers["x-hub-signature-256"];
  const ok = await webhooks.verify(text, signature ?? "").catch(() => false);
  if (!ok) return reply(res, 401);

  try {
    JSON.parse(text);
  } catch {
    return reply(res, 400);
  }
  const delivery = req.headers["x-github-delivery"];
  if (!delivery) return reply(res, 400);
  insert.run(delivery, body);
  reply(res, 202);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    console.error(err);
    if (!res.headersSent) reply(res, 500);
  });
});
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`listening on ${server.address().port}`);
});
