/*
 * The floor for an idle node's CPU: the least a process can do and still
 * take part in a shoal-sized cluster. It wakes for every received datagram
 * (poll, then reads until the socket is empty) and sends a datagram of
 * --size bytes (default 380) every --interval ms (default 400, shoal's
 * default hello interval). No parsing, no state: whatever an
 * implementation spends above this is its own.
 *
 * It sends to --broadcast (default 127.255.255.255, this host's loopback)
 * and nowhere else. It takes the flags benches/idle_cpu.sh and
 * benches/lan_bench.sh pass to a node and ignores all but --port,
 * --broadcast, --interval and --size:
 *
 *   gcc -O2 -o /tmp/idle_floor benches/idle_floor.c
 *   BIN=/tmp/idle_floor benches/idle_cpu.sh
 *
 * Another --broadcast is for a private network only: benches/lan_bench.sh
 * (SCENARIOS=cpu VARIANTS="floor floor-ndt") runs it inside the host
 * namespaces of its own LAN with that LAN's subnet broadcast; the program
 * refuses nothing, so do not give it an address of a real network.
 */
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
    int port = 0, one = 1, interval = 400, size = 380;
    const char *broadcast = "127.255.255.255";
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
        if (strcmp(argv[i], "--interval") == 0) interval = atoi(argv[i + 1]);
        if (strcmp(argv[i], "--size") == 0) size = atoi(argv[i + 1]);
        if (strcmp(argv[i], "--broadcast") == 0) broadcast = argv[i + 1];
    }
    if (port <= 0 || interval <= 0 || size <= 0 || size > 65507) {
        fprintf(stderr,
                "usage: %s --port N [--interval MS] [--size BYTES] [--broadcast ADDR]"
                " [ignored flags]\n",
                argv[0]);
        return 2;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    setsockopt(s, SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(s, (struct sockaddr *)&a, sizeof a)) {
        perror("bind");
        return 1;
    }
    struct sockaddr_in to = a;
    if (inet_pton(AF_INET, broadcast, &to.sin_addr) != 1) {
        fprintf(stderr, "%s: --broadcast %s: not an IPv4 address\n", argv[0], broadcast);
        return 2;
    }
    static char hello[65507], buf[65536];
    memset(hello, 'x', size);
    long long next = now_ms();
    for (;;) {
        long long n = now_ms();
        if (n >= next) {
            sendto(s, hello, size, 0, (struct sockaddr *)&to, sizeof to);
            next += interval;
        }
        struct pollfd p = {s, POLLIN, 0};
        if (poll(&p, 1, (int)(next - n > 0 ? next - n : 0)) > 0)
            while (recv(s, buf, sizeof buf, MSG_DONTWAIT) > 0) {
            }
    }
}
