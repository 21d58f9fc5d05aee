//! Host normalisation.

use super::*;

// ---- host normalisation ----

#[test]
fn normalize_host_cases() {
    let good = [
        (
            "dbc-123.cloud.databricks.com",
            "https://dbc-123.cloud.databricks.com",
        ),
        (
            "https://dbc-123.cloud.databricks.com/",
            "https://dbc-123.cloud.databricks.com",
        ),
        (
            "HTTPS://Adb-1.2.AzureDatabricks.NET",
            "https://adb-1.2.azuredatabricks.net",
        ),
        ("https://h.example/?o=123#x", "https://h.example"),
        ("https://h.example/some/path/", "https://h.example"),
        ("h.example:8443", "https://h.example:8443"),
        ("  https://h.example  ", "https://h.example"),
        ("http://localhost:8080/", "http://localhost:8080"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("http://127.1.2.3", "http://127.1.2.3"),
        ("http://[::1]:9000/x", "http://[::1]:9000"),
        ("https://[2001:db8::1]", "https://[2001:db8::1]"),
    ];
    for (input, want) in good {
        match normalize_host(input) {
            Ok(got) => assert_eq!(got, want, "{input}"),
            Err(e) => panic!("{input}: {e}"),
        }
    }
    let bad = [
        "",
        "   ",
        "https://",
        "https:///path",
        "ftp://h.example",
        "://h.example",
        "http://h.example",
        "http://10.0.0.1",
        "http://localhost.evil.example",
        "h ex ample",
        "https://h..example",
        "https://h.example:",
        "https://h.example:0",
        "https://h.example:65536",
        "https://h.example:80x",
        "https://[::1",
        "https://[nonsense]",
        "::1",
        "https://user:pw@h.example",
    ];
    for input in bad {
        assert!(
            matches!(normalize_host(input), Err(InvalidHost { .. })),
            "{input:?} accepted"
        );
    }
}

#[test]
fn invalid_host_never_shows_user_info() {
    let e = normalize_host("https://token:dapiSECRET123@h.example").unwrap_err();
    assert!(!e.to_string().contains(SECRET), "{e}");
    assert!(!format!("{e:?}").contains(SECRET), "{e:?}");
}

#[test]
fn invalid_host_from_resolve_names_the_value() {
    let home = Home::new();
    let e = err(&host_token("http://h.example", "t"), &[], &home);
    assert!(e.to_string().contains("h.example"), "{e}");
    assert!(e.to_string().contains("https"), "{e}");
}
