//! Unit tests of the pipe: framing, zero-copy passing, holding, streaming.
use super::*;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn out(p: &mut Pipe) -> Vec<u8> {
    let mut sink = Vec::new();
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    match p.poll_write_out(&mut cx, &mut sink) {
        Poll::Ready(Ok(())) => sink,
        other => panic!("{other:?}"),
    }
}

#[test]
fn unchanged_messages_go_out_without_copying() {
    let mut data = msg(b'Q', b"select 1\0");
    data.extend(msg(b'S', b""));
    let mut p = Pipe::with_input(&data);
    while let Next::Message(h) = p.next(1 << 20).unwrap() {
        p.pass_message(h);
    }
    assert!(!p.copying);
    assert_eq!(out(&mut p), data);
    assert!(p.is_empty());
}

#[test]
fn a_change_copies_the_rest_of_the_round_in_order() {
    let mut data = msg(b'B', b"x");
    data.extend(msg(b'E', b"y"));
    data.extend(msg(b'S', b""));
    let mut p = Pipe::with_input(&data);
    let mut want = Vec::new();
    let mut first = true;
    while let Next::Message(h) = p.next(1 << 20).unwrap() {
        if first {
            p.consume(h);
            p.emit().extend_from_slice(b"NEW");
            want.extend_from_slice(b"NEW");
            first = false;
        } else {
            want.extend_from_slice(p.whole(h).unwrap());
            p.pass_message(h);
        }
    }
    assert_eq!(out(&mut p), want);
}

#[test]
fn large_messages_stream_and_dropped_ones_vanish() {
    let big = vec![7u8; 40_000];
    let data = msg(b'd', &big);
    let mut p = Pipe::default();
    p.ensure_buffer();
    let mut sent = Vec::new();
    for chunk in data.chunks(10_000) {
        p.buf.extend_from_slice(chunk);
        loop {
            match p.next(1 << 20).unwrap() {
                Next::NeedMore => break,
                Next::Message(h) => {
                    assert!(!p.fits(h));
                    p.pass_message(h);
                }
            }
        }
        sent.extend(out(&mut p));
        p.compact();
    }
    assert_eq!(sent, data);
    assert!(!p.is_streaming());
    // Dropped: nothing out.
    let mut p = Pipe::with_input(&data[..100]);
    let Next::Message(h) = p.next(1 << 20).unwrap() else {
        panic!()
    };
    p.drop_message(h);
    assert!(p.is_streaming());
    assert!(out(&mut p).is_empty());
}

#[test]
fn held_messages_are_collected_as_they_arrive() {
    let big = vec![1u8; 30_000];
    let data = msg(b'P', &big);
    let mut p = Pipe::default();
    p.ensure_buffer();
    p.buf.extend_from_slice(&data[..1000]);
    let Next::Message(h) = p.next(1 << 20).unwrap() else {
        panic!()
    };
    p.start_holding(h);
    assert!(matches!(p.next(1 << 20).unwrap(), Next::NeedMore));
    let mut got = None;
    for chunk in data[1000..].chunks(8000) {
        p.compact();
        p.buf.extend_from_slice(chunk);
        if let Next::Message(h) = p.next(1 << 20).unwrap() {
            got = Some(p.whole(h).unwrap().to_vec());
            p.pass_message(h);
        }
    }
    assert_eq!(got.unwrap(), data);
    assert_eq!(out(&mut p), data);
}

#[test]
fn replace_head_streams_the_tail() {
    let body = vec![9u8; 20_000];
    let data = msg(b'B', &body);
    let mut p = Pipe::with_input(&data[..2000]);
    let Next::Message(h) = p.next(1 << 20).unwrap() else {
        panic!()
    };
    p.emit().extend_from_slice(b"HEAD");
    p.replace_head(h, 10);
    let mut sent = out(&mut p);
    p.compact();
    p.buf.extend_from_slice(&data[2000..]);
    assert!(matches!(p.next(1 << 20).unwrap(), Next::NeedMore));
    sent.extend(out(&mut p));
    let mut want = b"HEAD".to_vec();
    want.extend_from_slice(&data[10..]);
    assert_eq!(sent, want);
}
