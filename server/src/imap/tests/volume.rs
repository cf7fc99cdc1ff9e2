//! Heavy commands off the async workers, bounded LIST patterns, and the server-wide budget of
//! literal bytes in flight: over real sockets, with order-based evidence only.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use super::{Client, DEADLINE, MAIL, Setup, deliver, plaintext_config, setup};
use crate::imap::{ImapContext, ImapListenerKind};
use crate::inflight::InFlight;
use crate::offload::Offload;

fn with(s: &Setup, offload: Offload, inflight: InFlight) -> Arc<ImapContext> {
    Arc::new(ImapContext {
        hostname: s.ctx.hostname.clone(),
        config: s.ctx.config.clone(),
        registry: s.ctx.registry.clone(),
        backends: s.ctx.backends.clone(),
        store: s.ctx.store.clone(),
        tls: None,
        offload,
        inflight,
    })
}

/// Serves `ctx` on a loopback TCP listener.
async fn listen(ctx: Arc<ImapContext>) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(crate::imap::serve(listener, ImapListenerKind::Plain, ctx));
    (addr, task)
}

async fn connect(addr: std::net::SocketAddr) -> Client {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (c, greeting) = Client::over(Box::new(tcp)).await;
    assert!(greeting.starts_with("* OK "), "{greeting}");
    c
}

#[tokio::test]
async fn list_patterns_too_complex_are_refused_with_limit() {
    let s = setup(plaintext_config());
    let (addr, server) = listen(s.ctx.clone()).await;
    let mut c = connect(addr).await;
    c.login().await;
    let many = "a*".repeat(33);
    assert_eq!(
        c.cmd("a", &format!("LIST \"\" \"{many}\"")).await,
        "a NO [LIMIT] Mailbox pattern too complex.\r\n"
    );
    let long = "x".repeat(600);
    assert_eq!(
        c.cmd("b", &format!("LSUB \"{long}\" \"{long}%\"")).await,
        "b NO [LIMIT] Mailbox pattern too complex.\r\n",
        "reference and pattern count together"
    );
    // Long runs of wildcards collapse, so they stay allowed.
    let run = "%*".repeat(200);
    assert_eq!(
        c.cmd("c", &format!("LIST \"\" \"{run}\"")).await,
        "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\nc OK LIST completed.\r\n"
    );
    server.abort();
}

#[tokio::test]
async fn other_clients_are_served_while_a_heavy_command_runs() {
    let s = setup(plaintext_config());
    deliver(&s.ctx, MAIL);
    for i in 0..50 {
        s.ctx
            .store
            .create_mailbox("alice@example.com", &format!("Box{i}"))
            .expect("create");
    }
    // This test runs on a single-threaded runtime: the server's async work and the test share one
    // thread. A heavy job held at the gate blocks whatever thread runs it, so the second client
    // can only be served if that thread is not the runtime's.
    let (offload, mut gate) = Offload::gated(1);
    let ctx = with(&s, offload, InFlight::new(1 << 30));
    let (addr, server) = listen(ctx).await;
    let mut heavy = connect(addr).await;
    heavy.login().await;
    heavy.cmd("s", "SELECT INBOX").await;

    heavy.send(b"h1 LIST \"\" *\r\n").await;
    tokio::time::timeout(DEADLINE, gate.job_started())
        .await
        .expect("LIST runs as a heavy job");
    // The LIST is still running: its job has not returned. Another client logs in, selects,
    // fetches and idles meanwhile.
    let mut other = connect(addr).await;
    other.login().await;
    let reply = other.cmd("o1", "SELECT INBOX").await;
    assert!(
        reply.ends_with("o1 OK [READ-WRITE] Select completed.\r\n"),
        "{reply}"
    );
    let reply = other.cmd("o2", "FETCH 1 (FLAGS)").await;
    assert!(reply.ends_with("o2 OK Fetch completed.\r\n"), "{reply}");
    assert_eq!(other.cmd("o3", "NOOP").await, "o3 OK NOOP completed.\r\n");
    gate.release_one();
    let reply = heavy.until("h1").await;
    assert!(
        reply.contains("* LIST (\\HasNoChildren) \"/\" \"Box49\"\r\n"),
        "{reply}"
    );
    assert!(reply.ends_with("h1 OK LIST completed.\r\n"), "{reply}");

    // The same for SEARCH BODY, which parses every message.
    heavy.send(b"h2 SEARCH BODY noon\r\n").await;
    tokio::time::timeout(DEADLINE, gate.job_started())
        .await
        .expect("SEARCH runs as a heavy job");
    assert_eq!(other.cmd("o4", "NOOP").await, "o4 OK NOOP completed.\r\n");
    let reply = other.cmd("o5", "STATUS INBOX (MESSAGES)").await;
    assert!(reply.ends_with("o5 OK Status completed.\r\n"), "{reply}");
    gate.open();
    assert_eq!(
        heavy.until("h2").await,
        "* SEARCH 1\r\nh2 OK Search completed.\r\n"
    );
    server.abort();
}

#[tokio::test]
async fn literals_over_the_in_flight_budget_are_refused_before_they_are_read() {
    let s = setup(plaintext_config());
    s.ctx.store.ensure_user("alice@example.com");
    let pool = InFlight::new(1000);
    let ctx = with(&s, Offload::default(), pool.clone());
    let (addr, server) = listen(ctx).await;
    let message = format!("Subject: x\r\n\r\n{}\r\n", "y".repeat(584));
    assert_eq!(message.len(), 600);

    let mut a = connect(addr).await;
    a.login().await;
    a.send(b"a1 APPEND INBOX {600}\r\n").await;
    assert_eq!(a.line().await, "+ OK\r\n");
    assert_eq!(pool.in_use(), 600, "reserved before the literal is read");

    let mut b = connect(addr).await;
    b.login().await;
    assert_eq!(
        b.cmd("b1", "APPEND INBOX {600}").await,
        "b1 NO [UNAVAILABLE] Server busy, try again later.\r\n"
    );
    // A non-synchronizing literal is on its way already: refused, and skipped with its command.
    b.send(format!("b2 APPEND INBOX {{600+}}\r\n{message} (\\Seen)\r\n").as_bytes())
        .await;
    assert_eq!(
        b.until("b2").await,
        "b2 NO [UNAVAILABLE] Server busy, try again later.\r\n"
    );
    assert_eq!(b.cmd("b3", "NOOP").await, "b3 OK NOOP completed.\r\n");
    assert_eq!(pool.in_use(), 600, "refusals hold nothing");

    a.send(format!("{message}\r\n").as_bytes()).await;
    let reply = a.until("a1").await;
    assert!(reply.starts_with("a1 OK [APPENDUID "), "{reply}");
    assert_eq!(pool.in_use(), 0, "the command is done: nothing in flight");
    let reply = b
        .cmd("b4", &format!("APPEND INBOX {{600+}}\r\n{message}"))
        .await;
    assert!(reply.starts_with("b4 OK [APPENDUID "), "{reply}");
    let stored = s
        .ctx
        .store
        .messages("alice@example.com", "INBOX")
        .expect("inbox");
    assert_eq!(stored.len(), 2, "nothing half-stored");
    assert!(stored.iter().all(|m| m.data.len() == 600));
    assert_eq!(pool.in_use(), 0);
    server.abort();
}

#[test]
fn bad_command_log_lines_are_rate_limited() {
    use crate::imap::framing::Frame;
    use crate::imap::session::Session;
    let s = setup(plaintext_config());
    let (_, log) = crate::testkit::logs::capture(|| {
        let mut session = Session::new(s.ctx.clone(), None, false);
        for i in 0..9 {
            session.handle(Frame::Command(format!("t{i} FROB\r\n").into_bytes()));
            let out = String::from_utf8(session.take_output()).expect("utf-8");
            assert_eq!(out, format!("t{i} BAD Unknown command.\r\n"));
        }
        drop(session);
    });
    let first = crate::log_limit::FIRST_LINES as usize;
    assert_eq!(log.matches("syntax error").count(), first, "{log}");
    assert_eq!(
        log.matches("their log lines are suppressed").count(),
        1,
        "{log}"
    );
    let rest = format!("{} more bad-command log lines suppressed", 9 - first);
    assert_eq!(log.matches(&rest).count(), 1, "{log}");
}
