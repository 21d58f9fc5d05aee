// node-postgres compatibility workload for lakepool (driven by tests/e2e/compat.rs).
//
// COMPAT_CLIENTS concurrent clients, each with its own connection, run COMPAT_ITERS iterations
// of: a transaction (named INSERT with parameters, named SELECT checking the running count and
// sum, the backend pid and the session's SET values, COMMIT), every 10th iteration a rolled back
// INSERT, then autocommit named SELECTs that round-trip int, text, numeric, timestamptz, bytea
// and NULL parameters, and once a named statement that fails (division by zero) and is executed
// again. node-postgres parses a named query once per connection and afterwards only binds and
// executes it, so behind a transaction pooler the statements run on whichever server
// connection the client gets.
//
// Environment: COMPAT_HOST, COMPAT_PORT, COMPAT_USER, COMPAT_PASSWORD, COMPAT_DB, COMPAT_CA (PEM
// of the CA), COMPAT_TABLE, COMPAT_CLIENTS (10), COMPAT_ITERS (30).
// Prints "OK ..." and exits 0, or prints "FAIL ..." and exits 1.
'use strict';

const fs = require('fs');
const { Client } = require('pg');
const pgVersion = require('pg/package.json').version;

const env = (key, dflt) => {
  const v = process.env[key];
  if (v) return v;
  if (dflt === undefined) throw new Error(`environment variable ${key} is not set`);
  return dflt;
};

const TABLE = env('COMPAT_TABLE', 'compat_node');
const CLIENTS = Number(env('COMPAT_CLIENTS', '10'));
const ITERS = Number(env('COMPAT_ITERS', '30'));
const LABEL = `node-postgres ${pgVersion}`;

class Mismatch extends Error {}

function check(ok, what, got, want) {
  if (!ok) throw new Mismatch(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

async function connect() {
  const client = new Client({
    host: env('COMPAT_HOST', '127.0.0.1'),
    port: Number(env('COMPAT_PORT')),
    user: env('COMPAT_USER'),
    password: env('COMPAT_PASSWORD'),
    database: env('COMPAT_DB'),
    // Verifies the chain and the host name (127.0.0.1 is an IP SAN of the certificate).
    ssl: { ca: fs.readFileSync(env('COMPAT_CA'), 'utf8') },
    connectionTimeoutMillis: 10000,
    query_timeout: 60000,
  });
  await client.connect();
  return client;
}

// JavaScript dates have millisecond precision.
const stamp = (c, i) => new Date(Date.UTC(2026, 0, 1, c, i, 0, 123));
const payload = (c, i) => Buffer.from([c % 256, i % 256, 0, 0xff, 0x5c, 0x27]);

const INSERT = {
  name: 'compat_insert',
  text: `INSERT INTO ${TABLE} (client, i, amount, note, at, payload) VALUES ($1, $2, $3, $4, $5, $6)`,
};
const SUM = {
  name: 'compat_sum',
  text:
    "SELECT count(*)::int4 AS n, sum(amount)::text AS total, pg_backend_pid() AS pid," +
    " current_setting('application_name') AS app, current_setting('search_path') AS path" +
    ` FROM ${TABLE} WHERE client = $1`,
};
const ECHO = {
  name: 'compat_echo',
  text:
    "SELECT $1::int4 * 2 AS i2, $2::text || '-\u00fc' AS t, ($3::numeric + 1)::text AS n," +
    " $4::timestamptz + interval '1 day' AS ts, $5::bytea AS b, $6::int4 AS nul, pg_backend_pid() AS pid",
};
const DIV = { name: 'compat_div', text: 'SELECT 10 / $1::int4 AS q' };

async function insert(client, c, i, amount) {
  const r = await client.query({ ...INSERT, values: [c, i, amount, `c${c}-i${i}`, stamp(c, i), payload(c, i)] });
  check(r.rowCount === 1, 'INSERT row count', r.rowCount, 1);
}

async function runClient(c, pids) {
  const app = `compat_node_${c}`;
  const path = `compat_c${c}, public`;
  let i = 0;
  let client;
  try {
    client = await connect();
    await client.query(`SET application_name = '${app}'`);
    await client.query(`SET search_path = ${path}`);
    for (i = 1; i <= ITERS; i++) {
      await client.query('BEGIN');
      await insert(client, c, i, `${i}.50`);
      let row = (await client.query({ ...SUM, values: [c] })).rows[0];
      check(row.n === i, 'count(*)', row.n, i);
      const q = i * (i + 2); // twice the sum of k + 0.50 for k in 1..=i
      const want = `${Math.floor(q / 2)}.${q % 2 ? '50' : '00'}`;
      check(row.total === want, 'sum(amount)', row.total, want);
      pids.add(row.pid);
      check(row.app === app, 'application_name', row.app, app);
      check(row.path === path, 'search_path', row.path, path);
      await client.query('COMMIT');
      if (i % 10 === 0) {
        // A rolled back insert leaves nothing behind (checked by the next count).
        await client.query('BEGIN');
        await insert(client, c, 1000 + i, '999');
        await client.query('ROLLBACK');
      }

      // Autocommit: parameters of several types round-trip.
      const text = `c${c}-i${i} 'q" \\`;
      const num = `${100000000000000000000n + BigInt(i)}.125`;
      const wantNum = `${100000000000000000000n + BigInt(i) + 1n}.125`;
      row = (
        await client.query({ ...ECHO, values: [c * 1000 + i, text, num, stamp(c, i), payload(c, i), null] })
      ).rows[0];
      check(row.i2 === 2 * (c * 1000 + i), 'int4 * 2', row.i2, 2 * (c * 1000 + i));
      check(row.t === `${text}-\u00fc`, 'text', row.t, `${text}-\u00fc`);
      check(row.n === wantNum, 'numeric + 1', row.n, wantNum);
      const wantTs = stamp(c, i).getTime() + 86400000;
      check(row.ts instanceof Date && row.ts.getTime() === wantTs, 'timestamptz + 1 day', row.ts, new Date(wantTs));
      check(Buffer.isBuffer(row.b) && row.b.equals(payload(c, i)), 'bytea', row.b, payload(c, i));
      check(row.nul === null, 'NULL int4', row.nul, null);
      pids.add(row.pid);
      if (i === Math.floor(ITERS / 2)) {
        // An error in a prepared statement; the statement stays usable.
        let err = null;
        try {
          await client.query({ ...DIV, values: [0] });
        } catch (e) {
          err = e;
        }
        check(err !== null && err.code === '22012', 'SQLSTATE of 10 / 0', err && `${err.code} ${err.message}`, '22012');
      }
      row = (await client.query({ ...DIV, values: [5] })).rows[0];
      check(row.q === 2, '10 / 5', row.q, 2);
    }
    i = ITERS + 1;
    // The session's settings are still there.
    let got = (await client.query('SHOW application_name')).rows[0].application_name;
    check(got === app, 'SHOW application_name', got, app);
    got = (await client.query('SHOW search_path')).rows[0].search_path;
    check(got === path, 'SHOW search_path', got, path);
    return null;
  } catch (e) {
    return `client ${c}, iteration ${i}: ${e.constructor.name}: ${e.message}${e.code ? ` (SQLSTATE ${e.code})` : ''}`;
  } finally {
    if (client) await client.end().catch(() => {});
  }
}

async function main() {
  const start = process.hrtime.bigint();
  let client = await connect();
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${TABLE} (client int NOT NULL, i int NOT NULL,` +
      ' amount numeric NOT NULL, note text, at timestamptz, payload bytea, PRIMARY KEY (client, i))',
  );
  await client.query(`TRUNCATE ${TABLE}`);
  await client.end();

  const pids = new Set();
  const results = await Promise.all([...Array(CLIENTS).keys()].map((c) => runClient(c, pids)));
  const failures = results.filter((r) => r);
  if (failures.length) {
    for (const f of failures) console.log(`FAIL ${LABEL}: ${f}`);
    return 1;
  }
  client = await connect();
  const row = (await client.query(`SELECT count(*)::int4 AS n, count(DISTINCT client)::int4 AS c FROM ${TABLE}`)).rows[0];
  await client.end();
  check(row.n === CLIENTS * ITERS, `rows in ${TABLE}`, row.n, CLIENTS * ITERS);
  check(row.c === CLIENTS, `clients in ${TABLE}`, row.c, CLIENTS);
  check(pids.size >= 2, 'distinct backend pids seen', [...pids], '>= 2');
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(`OK ${LABEL}: ${CLIENTS} clients x ${ITERS} iterations, ${pids.size} backend pids seen, ${secs.toFixed(1)} s`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.log(`FAIL ${LABEL}: ${e.constructor.name}: ${e.message}${e.code ? ` (SQLSTATE ${e.code})` : ''}`);
    process.exit(1);
  },
);
