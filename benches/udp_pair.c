/*
 * The raw reference for channel throughput: a UDP sender and receiver that
 * do nothing per datagram but send it (one sendto per datagram) and count
 * it (one recv per datagram). Whatever a library delivers to its
 * application is compared with what this pair delivers on the same hosts,
 * in the same run, with datagrams of the same size.
 *
 *   gcc -O2 -o udp_pair benches/udp_pair.c
 *   udp_pair recv --port P --count N [--idle S] [--rcvbuf BYTES]
 *   udp_pair send --to ADDR --port P --count N --size BYTES [--rate PER_S]
 *
 * recv binds 0.0.0.0:P (SO_REUSEADDR), asks for a 2 MiB receive buffer
 * (what shoal asks for; --rcvbuf changes it), prints {"event":"ready"},
 * then counts datagrams until N arrived or S seconds (default 2) passed
 * without one once the first came, and prints one JSON line: received,
 * bytes, t_first and t_last (arrival times, ms since the Unix epoch, the
 * clock the other logs use) and rate (received per second from the first
 * to the last arrival).
 *
 * send sends N datagrams of BYTES bytes to ADDR:P (SO_BROADCAST is set: ADDR
 * is the LAN's subnet broadcast, where shoal sends), one sendto each; with
 * --rate, paced to PER_S datagrams per second (each datagram i not before
 * start + i/PER_S; late ones go at once, so the average holds). It prints
 * one JSON line: count, size, errors (failed sendto, e.g. ENOBUFS; a failed
 * datagram is not retried), t_start, t_done, rate.
 *
 * Where the datagrams go is the caller's choice: this program refuses
 * nothing. benches/lan_bench.sh runs it only inside the host namespaces of
 * its private LAN (ip netns exec), whose broadcasts cannot leave the LAN's
 * bridge; do not run `send` in a namespace that has a real network.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double epoch_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return t.tv_sec * 1000.0 + t.tv_nsec / 1e6;
}

static double mono_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void sleep_until_mono(double s) {
    struct timespec t;
    t.tv_sec = (time_t)s;
    t.tv_nsec = (long)((s - (double)t.tv_sec) * 1e9);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR) {
    }
}

static const char *flag(int argc, char **argv, const char *name, const char *dflt) {
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return dflt;
}

static int usage(const char *me) {
    fprintf(stderr,
            "usage: %s recv --port P --count N [--idle S] [--rcvbuf BYTES]\n"
            "       %s send --to ADDR --port P --count N --size BYTES [--rate PER_S]\n",
            me, me);
    return 2;
}

static int do_recv(int argc, char **argv) {
    int port = atoi(flag(argc, argv, "--port", "0"));
    long long count = atoll(flag(argc, argv, "--count", "0"));
    double idle = atof(flag(argc, argv, "--idle", "2"));
    int rcvbuf = atoi(flag(argc, argv, "--rcvbuf", "2097152"));
    if (port <= 0 || count <= 0) return usage(argv[0]);
    int s = socket(AF_INET, SOCK_DGRAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(s, (struct sockaddr *)&a, sizeof a)) {
        perror("bind");
        return 1;
    }
    int got = 0;
    socklen_t gl = sizeof got;
    getsockopt(s, SOL_SOCKET, SO_RCVBUF, &got, &gl);
    printf("{\"event\":\"ready\",\"t\":%.3f,\"rcvbuf\":%d}\n", epoch_ms(), got);
    fflush(stdout);
    /* Before the first datagram: wait as long as it takes (the caller
     * kills us); after it, give up after `idle` seconds of silence. */
    struct timeval tv = {(time_t)idle, (long)((idle - (long)idle) * 1e6)};
    static char buf[65536];
    long long n = 0, bytes = 0;
    double t_first = 0, t_last = 0;
    while (n < count) {
        ssize_t r = recv(s, buf, sizeof buf, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            perror("recv");
            break;
        }
        if (n == 0) {
            t_first = epoch_ms();
            setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        }
        n++;
        bytes += r;
    }
    /* The last arrival: taken once, after the loop, so that the loop does
     * nothing per datagram but count. When the count was reached this is
     * the last arrival; after a timeout it is idle seconds late, so the
     * time of the last datagram is taken as now - idle. */
    t_last = epoch_ms();
    if (n < count && n > 0) t_last -= idle * 1000.0;
    double span = (t_last - t_first) / 1000.0;
    printf("{\"event\":\"done\",\"received\":%lld,\"bytes\":%lld,\"t_first\":%.3f,"
           "\"t_last\":%.3f,\"rate\":%.1f,\"timed_out\":%s}\n",
           n, bytes, n ? t_first : 0.0, n ? t_last : 0.0, span > 0 ? n / span : 0.0,
           n < count ? "true" : "false");
    return 0;
}

static int do_send(int argc, char **argv) {
    const char *to = flag(argc, argv, "--to", NULL);
    int port = atoi(flag(argc, argv, "--port", "0"));
    long long count = atoll(flag(argc, argv, "--count", "0"));
    int size = atoi(flag(argc, argv, "--size", "0"));
    double rate = atof(flag(argc, argv, "--rate", "0"));
    if (!to || port <= 0 || count <= 0 || size <= 0 || size > 65507) return usage(argv[0]);
    int s = socket(AF_INET, SOCK_DGRAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
    struct sockaddr_in d = {0};
    d.sin_family = AF_INET;
    d.sin_port = htons(port);
    if (inet_pton(AF_INET, to, &d.sin_addr) != 1) {
        fprintf(stderr, "%s: --to %s: not an IPv4 address\n", argv[0], to);
        return 2;
    }
    char *payload = malloc(size);
    memset(payload, 'x', size);
    long long errors = 0;
    double t0 = epoch_ms(), m0 = mono_s();
    for (long long i = 0; i < count; i++) {
        if (rate > 0) {
            double due = m0 + i / rate;
            if (mono_s() < due) sleep_until_mono(due);
        }
        if (sendto(s, payload, size, 0, (struct sockaddr *)&d, sizeof d) < 0) errors++;
    }
    double t1 = epoch_ms();
    printf("{\"event\":\"sent\",\"count\":%lld,\"size\":%d,\"errors\":%lld,\"t_start\":%.3f,"
           "\"t_done\":%.3f,\"rate\":%.1f,\"paced\":%.1f}\n",
           count, size, errors, t0, t1, t1 > t0 ? count / ((t1 - t0) / 1000.0) : 0.0, rate);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage(argv[0]);
    if (strcmp(argv[1], "recv") == 0) return do_recv(argc, argv);
    if (strcmp(argv[1], "send") == 0) return do_send(argc, argv);
    return usage(argv[0]);
}
