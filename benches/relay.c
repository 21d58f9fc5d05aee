/*
 * relay: the floor under any pooler on this machine. A byte relay with no
 * protocol, no pooling and no bookkeeping: each client connection gets its
 * own connection to the upstream port, and whatever one side sends is
 * written to the other. One thread, level-triggered epoll, one read and one
 * write per message in each direction -- the same system calls per
 * transaction lakepool makes, and nothing else.
 *
 * What it measures: the CPU per transaction a proxy pays on this machine just
 * for being a second hop (the loopback TCP work of its sends and receives, and
 * the wake-ups): a floor under a pooler's own CPU per transaction. Not a bound
 * on a pooler's tps: it holds one PostgreSQL backend per client (50 against a
 * pool of 20), and under -C each login starts a backend. See benches/README.md.
 * Benchmarks only (benches/lib.sh compiles it with cc); not part of lakepool.
 *
 *   cc -O2 -o relay benches/relay.c && ./relay LISTEN_PORT UPSTREAM_PORT
 *
 * Both ports are on 127.0.0.1: it never listens on or connects to anything
 * else.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 65536
#define MAX_EVENTS 64

/* One socket of a pair. `pending` holds what was read from the peer and not
 * yet written here; while it is non-empty the peer is not read (back
 * pressure), so a slow side never makes the relay buffer more than one read. */
struct side {
    int fd;
    int closed;
    struct side *peer;
    char *pending;
    size_t len, off;
    struct side *next_free;
};

static int ep;
static char buf[BUF_SIZE];
static struct side listener_tag; /* epoll data for the listening socket */
static struct side *to_free;     /* closed this batch; freed after it */

static void die(const char *what) {
    perror(what);
    exit(1);
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* Read interest while the peer has nothing queued; write interest while this
 * side has something queued. */
static void update(struct side *s) {
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = (s->peer->len ? 0 : EPOLLIN) | (s->len ? EPOLLOUT : 0);
    e.data.ptr = s;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &e) < 0)
        die("epoll_ctl");
}

/* Closes both sockets. What is still queued is dropped, and a close with unread
 * bytes sends a reset: enough for a benchmark, where either side closing ends
 * the session anyway. */
static void close_pair(struct side *s) {
    struct side *sides[2] = {s, s->peer};
    for (int i = 0; i < 2; i++) {
        if (sides[i]->closed)
            continue;
        sides[i]->closed = 1;
        close(sides[i]->fd);
        sides[i]->next_free = to_free;
        to_free = sides[i];
    }
}

/* Writes what `s` has queued; returns -1 if the pair was closed. */
static int flush(struct side *s) {
    while (s->len) {
        ssize_t w = write(s->fd, s->pending + s->off, s->len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return 0;
        if (w <= 0) {
            close_pair(s);
            return -1;
        }
        s->off += (size_t)w;
        s->len -= (size_t)w;
    }
    free(s->pending);
    s->pending = NULL;
    s->off = 0;
    update(s);
    update(s->peer);
    return 0;
}

/* One read from `s`, written on to its peer; a short write queues the rest. */
static void relay_once(struct side *s) {
    struct side *p = s->peer;
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        close_pair(s);
        return;
    }
    size_t done = 0;
    while (done < (size_t)n) {
        ssize_t w = write(p->fd, buf + done, (size_t)n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            break;
        if (w <= 0) {
            close_pair(s);
            return;
        }
        done += (size_t)w;
    }
    if (done < (size_t)n) {
        p->len = (size_t)n - done;
        p->pending = malloc(p->len);
        if (!p->pending)
            die("malloc");
        memcpy(p->pending, buf + done, p->len);
        update(p);
        update(s);
    }
}

static void add(struct side *s) {
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = EPOLLIN;
    e.data.ptr = s;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &e) < 0)
        die("epoll_ctl");
}

static void accept_all(int lfd, int upstream_port) {
    for (;;) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN) {
                perror("accept4");
                /* Out of descriptors: the listener stays readable, so back off
                 * instead of spinning. */
                usleep(10000);
            }
            return;
        }
        /* A blocking connect: on loopback it completes at once. */
        int sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in up = loopback(upstream_port);
        if (sfd < 0 || connect(sfd, (struct sockaddr *)&up, sizeof up) < 0) {
            perror("connect upstream");
            if (sfd >= 0)
                close(sfd);
            close(cfd);
            continue;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (fcntl(sfd, F_SETFL, O_NONBLOCK) < 0)
            die("fcntl");
        struct side *c = calloc(1, sizeof *c), *s = calloc(1, sizeof *s);
        if (!c || !s)
            die("calloc");
        c->fd = cfd;
        s->fd = sfd;
        c->peer = s;
        s->peer = c;
        add(c);
        add(s);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_PORT (both on 127.0.0.1)\n", argv[0]);
        return 2;
    }
    int listen_port = atoi(argv[1]), upstream_port = atoi(argv[2]);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = loopback(listen_port);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1024) < 0)
        die("listen");
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event le;
    memset(&le, 0, sizeof le);
    le.events = EPOLLIN;
    le.data.ptr = &listener_tag;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le) < 0)
        die("epoll_ctl");

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct side *s = events[i].data.ptr;
            if (s == &listener_tag) {
                accept_all(lfd, upstream_port);
                continue;
            }
            if (s->closed)
                continue;
            if ((events[i].events & EPOLLOUT) && flush(s) < 0)
                continue;
            if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                continue;
            if (s->peer->len == 0)
                relay_once(s);
            else if (events[i].events & (EPOLLHUP | EPOLLERR))
                close_pair(s); /* paused for back pressure, and its socket failed */
        }
        while (to_free) {
            struct side *f = to_free;
            to_free = f->next_free;
            free(f->pending);
            free(f);
        }
    }
}
