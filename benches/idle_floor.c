/*
 * The floor for an idle node's CPU: the least a process can do and still
 * take part in a shoal-sized cluster. It wakes for every received datagram
 * (poll, then reads until the socket is empty) and sends a 380-byte
 * datagram every 400 ms, shoal's default hello interval. No parsing, no
 * state: whatever an implementation spends above this is its own.
 *
 * Loopback only: it sends to 127.255.255.255 and nowhere else. It takes the
 * flags benches/idle_cpu.sh passes to a node and ignores all but --port:
 *
 *   gcc -O2 -o /tmp/idle_floor benches/idle_floor.c
 *   BIN=/tmp/idle_floor benches/idle_cpu.sh
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
    int port = 0, one = 1;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
    if (port <= 0) {
        fprintf(stderr, "usage: %s --port N [ignored flags]\n", argv[0]);
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
    inet_pton(AF_INET, "127.255.255.255", &to.sin_addr);
    char hello[380], buf[65536];
    memset(hello, 'x', sizeof hello);
    long long next = now_ms();
    for (;;) {
        long long n = now_ms();
        if (n >= next) {
            sendto(s, hello, sizeof hello, 0, (struct sockaddr *)&to, sizeof to);
            next += 400;
        }
        struct pollfd p = {s, POLLIN, 0};
        if (poll(&p, 1, (int)(next - n > 0 ? next - n : 0)) > 0)
            while (recv(s, buf, sizeof buf, MSG_DONTWAIT) > 0) {
            }
    }
}
