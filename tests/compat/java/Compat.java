// pgjdbc compatibility workload for lakepool (driven by tests/e2e/compat.rs).
//
// COMPAT_CLIENTS threads, each with its own connection, run COMPAT_ITERS iterations of:
// a transaction (prepared INSERT with parameters, prepared SELECT checking the running count and
// sum, the backend pid and the session's SET values, COMMIT), every 10th iteration a rolled back
// INSERT, then autocommit prepared SELECTs that round-trip int, text, numeric, timestamptz,
// bytea and NULL parameters, and once a prepared statement that fails (division by zero) and is
// executed again. The same PreparedStatement objects are reused throughout, so with
// prepareThreshold=N they become named server-side statements after N uses and, behind a
// transaction pooler, are executed on whichever server connection the client gets.
//
// Environment: COMPAT_HOST, COMPAT_PORT, COMPAT_USER, COMPAT_PASSWORD, COMPAT_DB, COMPAT_CA (PEM
// of the CA), COMPAT_TABLE, COMPAT_CLIENTS (10), COMPAT_ITERS (30), COMPAT_PREPARE_THRESHOLD (5).
// Prints "OK ..." and exits 0, or prints "FAIL ..." and exits 1.

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

public class Compat {
    static final String TABLE = env("COMPAT_TABLE", "compat_pgjdbc");
    static final int CLIENTS = Integer.parseInt(env("COMPAT_CLIENTS", "10"));
    static final int ITERS = Integer.parseInt(env("COMPAT_ITERS", "30"));
    static final String THRESHOLD = env("COMPAT_PREPARE_THRESHOLD", "5");
    static final String LABEL = "pgjdbc prepareThreshold=" + THRESHOLD;

    static String env(String key, String dflt) {
        String v = System.getenv(key);
        if (v != null && !v.isEmpty()) {
            return v;
        }
        if (dflt == null) {
            throw new IllegalStateException("environment variable " + key + " is not set");
        }
        return dflt;
    }

    /** A mismatch between what the server returned and what PostgreSQL semantics require. */
    static final class Mismatch extends Exception {
        Mismatch(String msg) {
            super(msg);
        }
    }

    /** The exception and its causes, e.g. why "The connection attempt failed". */
    static String describe(Throwable e) {
        StringBuilder sb = new StringBuilder(e.toString());
        for (Throwable c = e.getCause(); c != null && c != c.getCause(); c = c.getCause()) {
            sb.append("; caused by ").append(c);
        }
        return sb.toString();
    }

    static void check(boolean ok, String what, Object got, Object want) throws Mismatch {
        if (!ok) {
            throw new Mismatch(what + ": got " + got + ", want " + want);
        }
    }

    static Connection connect() throws SQLException {
        String url = "jdbc:postgresql://" + env("COMPAT_HOST", "127.0.0.1") + ":" + env("COMPAT_PORT", null)
                + "/" + env("COMPAT_DB", null)
                + "?sslmode=verify-full&sslrootcert=" + env("COMPAT_CA", null)
                + "&prepareThreshold=" + THRESHOLD
                + "&connectTimeout=10&socketTimeout=60";
        Properties p = new Properties();
        p.setProperty("user", env("COMPAT_USER", null));
        p.setProperty("password", env("COMPAT_PASSWORD", null));
        return DriverManager.getConnection(url, p);
    }

    static OffsetDateTime stamp(int c, int i) {
        return OffsetDateTime.of(2026, 1, 1, 0, 0, 0, 0, ZoneOffset.UTC)
                .plusHours(c).plusMinutes(i).plusNanos(123456000L);
    }

    static byte[] payload(int c, int i) {
        return new byte[] {(byte) c, (byte) i, 0, (byte) 0xff, (byte) '\\', (byte) '\''};
    }

    static void insert(PreparedStatement ins, int c, int i, BigDecimal amount) throws Exception {
        ins.setInt(1, c);
        ins.setInt(2, i);
        ins.setBigDecimal(3, amount);
        ins.setString(4, "c" + c + "-i" + i);
        ins.setObject(5, stamp(c, i));
        ins.setBytes(6, payload(c, i));
        int n = ins.executeUpdate();
        check(n == 1, "INSERT row count", n, 1);
    }

    /** Runs client {@code c}; failures name the client and the iteration (0 = setup). */
    static Set<Integer> runClient(int c) throws Exception {
        int[] at = {0};
        try {
            return clientLoop(c, at);
        } catch (Exception e) {
            throw new Exception("client " + c + ", iteration " + at[0] + ": " + describe(e), e);
        }
    }

    static Set<Integer> clientLoop(int c, int[] at) throws Exception {
        Set<Integer> pids = new HashSet<>();
        String app = "compat_pgjdbc_" + c;
        String path = "compat_c" + c + ", public";
        try (Connection conn = connect()) {
            try (Statement s = conn.createStatement()) {
                s.execute("SET application_name = '" + app + "'");
                s.execute("SET search_path = " + path);
            }
            PreparedStatement ins = conn.prepareStatement(
                    "INSERT INTO " + TABLE + " (client, i, amount, note, at, payload) VALUES (?, ?, ?, ?, ?, ?)");
            PreparedStatement sum = conn.prepareStatement(
                    "SELECT count(*), sum(amount), pg_backend_pid(), current_setting('application_name'),"
                            + " current_setting('search_path') FROM " + TABLE + " WHERE client = ?");
            PreparedStatement echo = conn.prepareStatement(
                    "SELECT ?::int4 * 2, ?::text || '-\u00fc', ?::numeric + 1, ?::timestamptz + interval '1 day',"
                            + " ?::bytea, ?::int4, pg_backend_pid()");
            PreparedStatement div = conn.prepareStatement("SELECT 10 / ?::int4");
            for (int i = 1; i <= ITERS; i++) {
                at[0] = i;
                // One transaction: insert, then check the running count and sum.
                conn.setAutoCommit(false);
                insert(ins, c, i, new BigDecimal(i + ".50"));
                sum.setInt(1, c);
                try (ResultSet rs = sum.executeQuery()) {
                    check(rs.next(), "sum row", "none", "one row");
                    check(rs.getLong(1) == i, "count(*)", rs.getLong(1), i);
                    BigDecimal want = new BigDecimal(i * (i + 2)).divide(new BigDecimal(2));
                    check(rs.getBigDecimal(2).compareTo(want) == 0, "sum(amount)", rs.getBigDecimal(2), want);
                    pids.add(rs.getInt(3));
                    check(app.equals(rs.getString(4)), "application_name", rs.getString(4), app);
                    check(path.equals(rs.getString(5)), "search_path", rs.getString(5), path);
                }
                conn.commit();
                if (i % 10 == 0) {
                    // A rolled back insert leaves nothing behind (checked by the next count).
                    insert(ins, c, 1000 + i, new BigDecimal("999"));
                    conn.rollback();
                }
                conn.setAutoCommit(true);

                // Autocommit: parameters of several types round-trip.
                String text = "c" + c + "-i" + i + " 'q\" \\";
                BigDecimal num = new BigDecimal("100000000000000000000.125").add(new BigDecimal(i));
                echo.setInt(1, c * 1000 + i);
                echo.setString(2, text);
                echo.setBigDecimal(3, num);
                echo.setObject(4, stamp(c, i));
                echo.setBytes(5, payload(c, i));
                echo.setNull(6, Types.INTEGER);
                try (ResultSet rs = echo.executeQuery()) {
                    check(rs.next(), "echo row", "none", "one row");
                    check(rs.getInt(1) == 2 * (c * 1000 + i), "int4 * 2", rs.getInt(1), 2 * (c * 1000 + i));
                    String wantText = text + "-\u00fc";
                    check(wantText.equals(rs.getString(2)), "text", rs.getString(2), wantText);
                    BigDecimal wantNum = num.add(BigDecimal.ONE);
                    check(rs.getBigDecimal(3).compareTo(wantNum) == 0, "numeric + 1", rs.getBigDecimal(3), wantNum);
                    OffsetDateTime ts = rs.getObject(4, OffsetDateTime.class);
                    OffsetDateTime wantTs = stamp(c, i).plusDays(1);
                    check(ts.toInstant().equals(wantTs.toInstant()), "timestamptz + 1 day", ts, wantTs);
                    check(Arrays.equals(rs.getBytes(5), payload(c, i)), "bytea",
                            Arrays.toString(rs.getBytes(5)), Arrays.toString(payload(c, i)));
                    rs.getInt(6);
                    check(rs.wasNull(), "NULL int4", rs.getObject(6), "null");
                    pids.add(rs.getInt(7));
                }
                if (i == ITERS / 2) {
                    // An error in a prepared statement; the statement stays usable.
                    div.setInt(1, 0);
                    try {
                        div.executeQuery().close();
                        throw new Mismatch("10 / 0 succeeded");
                    } catch (SQLException e) {
                        check("22012".equals(e.getSQLState()), "SQLSTATE of 10 / 0",
                                e.getSQLState() + " " + e.getMessage(), "22012");
                    }
                }
                div.setInt(1, 5);
                try (ResultSet rs = div.executeQuery()) {
                    check(rs.next() && rs.getInt(1) == 2, "10 / 5", rs.getInt(1), 2);
                }
            }
            at[0] = ITERS + 1;
            // The session's settings are still there, seen through a plain statement.
            try (Statement s = conn.createStatement(); ResultSet rs = s.executeQuery("SHOW application_name")) {
                rs.next();
                check(app.equals(rs.getString(1)), "SHOW application_name", rs.getString(1), app);
            }
            try (Statement s = conn.createStatement(); ResultSet rs = s.executeQuery("SHOW search_path")) {
                rs.next();
                check(path.equals(rs.getString(1)), "SHOW search_path", rs.getString(1), path);
            }
        }
        return pids;
    }

    public static void main(String[] args) {
        try {
            long start = System.nanoTime();
            try (Connection conn = connect(); Statement s = conn.createStatement()) {
                s.execute("CREATE TABLE IF NOT EXISTS " + TABLE + " (client int NOT NULL, i int NOT NULL,"
                        + " amount numeric NOT NULL, note text, at timestamptz, payload bytea,"
                        + " PRIMARY KEY (client, i))");
                s.execute("TRUNCATE " + TABLE);
            }
            ExecutorService exec = Executors.newFixedThreadPool(CLIENTS);
            List<Future<Set<Integer>>> futures = new ArrayList<>();
            for (int c = 0; c < CLIENTS; c++) {
                final int id = c;
                futures.add(exec.submit(() -> runClient(id)));
            }
            Set<Integer> pids = new HashSet<>();
            List<String> failures = new ArrayList<>();
            for (Future<Set<Integer>> f : futures) {
                try {
                    pids.addAll(f.get());
                } catch (ExecutionException e) {
                    failures.add(e.getCause().getMessage());
                }
            }
            exec.shutdown();
            if (!failures.isEmpty()) {
                for (String f : failures) {
                    System.out.println("FAIL " + LABEL + ": " + f);
                }
                System.exit(1);
            }
            try (Connection conn = connect(); Statement s = conn.createStatement();
                    ResultSet rs = s.executeQuery("SELECT count(*), count(DISTINCT client) FROM " + TABLE)) {
                rs.next();
                check(rs.getLong(1) == (long) CLIENTS * ITERS, "rows in " + TABLE, rs.getLong(1), CLIENTS * ITERS);
                check(rs.getLong(2) == CLIENTS, "clients in " + TABLE, rs.getLong(2), CLIENTS);
            }
            check(pids.size() >= 2, "distinct backend pids seen", pids, ">= 2");
            System.out.printf("OK %s: %d clients x %d iterations, %d backend pids seen, %.1f s%n",
                    LABEL, CLIENTS, ITERS, pids.size(), (System.nanoTime() - start) / 1e9);
        } catch (Exception e) {
            System.out.println("FAIL " + LABEL + ": " + describe(e));
            System.exit(1);
        }
    }
}
