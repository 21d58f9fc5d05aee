// Session isolation through a transaction pooler with pgjdbc (driven by
// tests/e2e/isolation_drivers.rs).
//
// The changes run through java.sql.Statement; the checks through PreparedStatements, which
// prepareThreshold=1 makes named server-side statements from their first use. Otherwise as
// tests/compat/python/isolation_psycopg.py, with the same environment.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class Isolation {
    static final String LABEL = "pgjdbc prepareThreshold=1";

    static String env(String key) {
        String v = System.getenv(key);
        if (v == null) {
            throw new IllegalStateException("environment variable " + key + " is not set");
        }
        return v;
    }

    static Connection connect() throws SQLException {
        String host = System.getenv().getOrDefault("COMPAT_HOST", "127.0.0.1");
        String url = "jdbc:postgresql://" + host + ":" + env("COMPAT_PORT") + "/" + env("COMPAT_DB")
                + "?sslmode=verify-full&sslrootcert=" + env("COMPAT_CA")
                + "&prepareThreshold=1&connectTimeout=10&socketTimeout=60";
        Properties p = new Properties();
        p.setProperty("user", env("COMPAT_USER"));
        p.setProperty("password", env("COMPAT_PASSWORD"));
        return DriverManager.getConnection(url, p);
    }

    static String row(PreparedStatement ps) throws SQLException {
        try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            int n = rs.getMetaData().getColumnCount();
            StringBuilder sb = new StringBuilder();
            for (int i = 1; i <= n; i++) {
                String v = rs.getString(i);
                if (i > 1) {
                    sb.append('|');
                }
                sb.append(v == null ? "" : v);
            }
            return sb.toString();
        }
    }

    static List<String> lines(String s) {
        List<String> out = new ArrayList<>();
        for (String l : s.split("\n")) {
            if (!l.trim().isEmpty()) {
                out.add(l);
            }
        }
        return out;
    }

    public static void main(String[] args) throws Exception {
        List<String> failures = new ArrayList<>();
        String defaults = env("ISO_DEFAULTS");
        String ownWant = env("ISO_OWN_WANT");
        List<String> changes = lines(env("ISO_CHANGES"));
        for (String change : changes) {
            try (Connection first = connect(); Statement st = first.createStatement()) {
                st.execute(change);
                if (st.getWarnings() != null) {
                    failures.add("'" + change + "': unexpected notice " + st.getWarnings());
                }
            }
            try (Connection second = connect();
                    PreparedStatement check = second.prepareStatement(env("ISO_CHECK"))) {
                String got = row(check);
                if (!got.equals(defaults)) {
                    failures.add("after '" + change + "' a new connection sees '" + got + "', want '" + defaults + "'");
                }
            }
        }

        try (Connection mine = connect(); Connection other = connect()) {
            try (Statement st = mine.createStatement()) {
                for (String change : lines(env("ISO_OWN_CHANGES"))) {
                    st.execute(change);
                    if (st.getWarnings() != null) {
                        failures.add("'" + change + "': unexpected notice " + st.getWarnings());
                    }
                    st.clearWarnings();
                }
            }
            PreparedStatement otherCheck = other.prepareStatement(env("ISO_CHECK"));
            PreparedStatement own = mine.prepareStatement(env("ISO_OWN_CHECK"));
            for (int i = 0; i < 3; i++) {
                String got = row(otherCheck);
                if (!got.equals(defaults)) {
                    failures.add("round " + i + ": the other connection sees '" + got + "'");
                }
                got = row(own);
                if (!got.equals(ownWant)) {
                    failures.add("round " + i + ": own settings in autocommit '" + got + "', want '" + ownWant + "'");
                }
                mine.setAutoCommit(false);
                got = row(own);
                mine.commit();
                mine.setAutoCommit(true);
                if (!got.equals(ownWant)) {
                    failures.add("round " + i + ": own settings in a transaction '" + got + "', want '" + ownWant + "'");
                }
            }
        }

        if (!failures.isEmpty()) {
            for (String f : failures) {
                System.out.println("FAIL " + LABEL + ": " + f);
            }
            System.exit(1);
        }
        System.out.println("OK " + LABEL + ": " + changes.size()
                + " changes did not leak; own settings followed the connection");
    }
}
