//! ManageSieve and Sieve end to end: a filter uploaded with an OIDC login files inbound and
//! submitted mail into the folder IMAP shows (both IdPs), and Debian's `sieve-connect` (a real
//! client, run with the lines `mail-oidc up` prints) uploads and activates a filter that
//! delivery then runs.

mod common;

use std::time::Duration;

use common::{Grant, stack_with, user_and_token};
use mail_oidc_harness::clients::imap::ImapClient;
use mail_oidc_harness::clients::sieve_connect::SieveConnect;
use mail_oidc_harness::clients::smtp::SmtpClient;
use mail_oidc_harness::stack::Idp;
use mail_oidc_harness::suites::sieve::{FILTER, FOLDER, filtering};
use rstest::rstest;

#[rstest]
#[tokio::test]
async fn a_filter_uploaded_with_an_oidc_login_files_mail(
    #[values(Idp::LemonLdap, Idp::Keycloak)] idp: Idp,
) {
    let stack = stack_with(idp).await;
    let (user, tokens) = user_and_token(&stack, Grant::Password).await;
    let ep = stack.endpoints();
    filtering(
        &stack.mail_target(),
        Some(ep.smtp),
        &user.mail,
        &tokens.access_token,
    )
    .await
    .assert_passed();
}

#[tokio::test]
async fn sieve_connect_uploads_and_activates_a_filter_that_delivery_runs() {
    let stack = stack_with(Idp::LemonLdap).await;
    let user = stack.create_user("sc").await.expect("user");
    let ep = stack.endpoints();
    let sc = SieveConnect {
        port: ep.sieve.port(),
        ca_file: ep.ca_cert.clone(),
        user: user.mail.clone(),
        password: user.password.clone(),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("filter.sieve"), FILTER).expect("script file");
    let limit = Duration::from_secs(30);
    for args in [
        sc.upload(std::path::Path::new("filter.sieve"), "filter"),
        sc.activate("filter"),
    ] {
        let run = sc
            .run(&args, dir.path(), limit)
            .await
            .expect("sieve-connect");
        assert!(run.success, "{}: {run:?}", sc.shell_line(&args));
    }
    let listed = sc.run(&sc.list(), dir.path(), limit).await.expect("list");
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.contains("filter") && l.contains("ACTIVE")),
        "--list: {listed:?}"
    );

    let mut smtp = SmtpClient::connect(ep.smtp).await.expect("inbound SMTP");
    smtp.ehlo("sender.example").await.expect("EHLO");
    let reply = smtp
        .send_mail(
            "list@sender.example",
            &[&user.mail],
            b"Subject: [list] via sieve-connect\r\n\r\nbody\r\n",
        )
        .await
        .expect("send");
    assert_eq!(reply.code, 250, "{reply}");

    let mut imap = ImapClient::connect_tls(ep.imaps, &ep.ca_pem)
        .await
        .expect("IMAPS");
    let login = imap
        .command(&format!("LOGIN {} {}", user.mail, user.password))
        .await
        .expect("LOGIN");
    assert!(login.is_ok(), "{login:?}");
    let examine = imap
        .command(&format!("EXAMINE {FOLDER}"))
        .await
        .expect("EXAMINE");
    assert!(
        examine.untagged.iter().any(|l| l == "* 1 EXISTS"),
        "the filter did not file the message: {examine:?}"
    );
    let inbox = imap.command("EXAMINE INBOX").await.expect("EXAMINE INBOX");
    assert!(
        inbox.untagged.iter().any(|l| l == "* 0 EXISTS"),
        "the message also reached INBOX: {inbox:?}"
    );
}
