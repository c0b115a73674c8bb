/* Connect-rate load generator for `pushwire bench mqtt --only connect`.
 *
 * `inflight` connections at a time, each: non-blocking connect to 127.0.0.1:port, MQTT 3.1.1
 * CONNECT (clean session, pre-encoded), wait for the 4-byte CONNACK, send DISCONNECT, wait for
 * the server to close (so TIME_WAIT stays on its side), close, start the next one. Client ids cycle through `ids` names. Everything runs on one epoll loop,
 * so the client side costs a few syscalls per connection (Python's asyncio costs ~10x more and
 * could not saturate mosquitto). Times are CLOCK_MONOTONIC seconds, the clock Python's
 * time.monotonic() reads, so the orchestrator can hand over absolute window edges.
 *
 * usage: connect_storm PORT INFLIGHT IDS PREFIX WINDOW_START WINDOW_END STOP_AT
 * prints: "<connacks in window> <failures in window> <window seconds> <cpu seconds in window>"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct slot { int fd; int got; unsigned char buf[4]; };

static double now_s(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}
static double cpu_s(void) {
    struct rusage ru; getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static struct sockaddr_in addr;
static int ep;
static unsigned char **packets; static int *packet_len; static int ids, next_id;

static int open_one(struct slot *s) {
    s->got = 0;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s->fd < 0) return -1;
    int one = 1; setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(s->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(s->fd); s->fd = -1; return -1;
    }
    struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = s };
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 8) { fprintf(stderr, "usage: %s PORT INFLIGHT IDS PREFIX START END STOP\n", argv[0]); return 2; }
    int port = atoi(argv[1]), inflight = atoi(argv[2]); ids = atoi(argv[3]);
    const char *prefix = argv[4];
    double start = atof(argv[5]), end = atof(argv[6]), stop = atof(argv[7]);
    if (inflight < 1 || ids < 1) return 2;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET; addr.sin_port = htons(port); addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    packets = calloc(ids, sizeof *packets); packet_len = calloc(ids, sizeof *packet_len);
    for (int i = 0; i < ids; i++) {
        char cid[128]; int n = snprintf(cid, sizeof cid, "%s%d", prefix, i);
        int rem = 10 + 2 + n;
        unsigned char *p = packets[i] = malloc(rem + 2);
        int k = 0;
        p[k++] = 0x10; p[k++] = rem;  /* ids are short: remaining length < 128 */
        memcpy(p + k, "\0\4MQTT\4\2\2\x58", 10); k += 10;  /* level 4, clean, keepalive 600 */
        p[k++] = n >> 8; p[k++] = n & 0xff; memcpy(p + k, cid, n); k += n;
        packet_len[i] = k;
    }
    ep = epoll_create1(0);
    struct slot *slots = calloc(inflight, sizeof *slots);
    long ok = 0, failed = 0, ok0 = -1, failed0 = 0, ok_end = -1, failed_end = 0;
    double cpu0 = 0, t0 = 0, t1 = 0, cpu1 = 0;  /* the load runs from launch (warm-up) */
    for (int i = 0; i < inflight; i++) if (open_one(&slots[i]) < 0) failed++;
    struct epoll_event evs[256];
    static const unsigned char disconnect[2] = { 0xe0, 0x00 };
    for (;;) {
        double t = now_s();
        if (ok0 < 0 && t >= start) { ok0 = ok; failed0 = failed; cpu0 = cpu_s(); t0 = t; }
        if (ok_end < 0 && t >= end) { ok_end = ok; failed_end = failed; cpu1 = cpu_s(); t1 = t; }
        if (t >= stop) break;
        int n = epoll_wait(ep, evs, 256, 10);
        for (int e = 0; e < n; e++) {
            struct slot *s = evs[e].data.ptr;
            int done = 0, good = 0;
            if (evs[e].events & (EPOLLERR | EPOLLHUP) && !(evs[e].events & EPOLLIN)) done = 1;
            else if (evs[e].events & EPOLLOUT) {
                int id = next_id; next_id = (next_id + 1) % ids;
                if (write(s->fd, packets[id], packet_len[id]) != packet_len[id]) done = 1;
                else { struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s }; epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev); }
            } else if (evs[e].events & EPOLLIN) {
                if (s->got == 4) {  /* DISCONNECT sent: wait for the server to close first */
                    unsigned char junk[64];
                    ssize_t r = read(s->fd, junk, sizeof junk);
                    if (r <= 0) { done = 1; good = 1; }
                } else {
                    ssize_t r = read(s->fd, s->buf + s->got, 4 - s->got);
                    if (r <= 0) done = 1;
                    else if ((s->got += r) == 4) {
                        if (s->buf[0] == 0x20 && s->buf[3] == 0 && write(s->fd, disconnect, 2) == 2) {
                            /* the server closes after DISCONNECT: its side then holds the
                               TIME_WAIT, not this one (whose ports would run out) */
                        } else done = 1;
                    }
                }
            }
            if (done) {
                close(s->fd);  /* also removes it from the epoll set */
                if (good) ok++; else failed++;
                if (open_one(s) < 0) failed++;
            }
        }
    }
    if (ok0 < 0) { ok0 = ok; t0 = now_s(); cpu0 = cpu_s(); }
    if (ok_end < 0) { ok_end = ok; failed_end = failed; t1 = now_s(); cpu1 = cpu_s(); }
    printf("%ld %ld %.6f %.6f\n", ok_end - ok0, failed_end - failed0, t1 - t0, cpu1 - cpu0);
    return 0;
}
