// Backend for benchmarks/chunked.sh: a single-threaded epoll HTTP/1.1 keep-alive server on
// 127.0.0.1 that answers with chunked bodies fast enough not to be the bottleneck.
//
//   chunked_backend CHUNKS CHUNK_SIZE PORT...
//
// GET /canonical  200, Transfer-Encoding: chunked, CHUNKS chunks of CHUNK_SIZE bytes with
//                 canonical chunk lines ("bb8\r\n"), then "0\r\n\r\n"
// GET /ext        the same body, but every chunk line has leading zeros, upper-case hex and an
//                 extension ("00BB8;ext=1\r\n"), and the last chunk carries one too
// GET /cl         the same body bytes with Content-Length (no chunking), for reference
// anything else   200 with Content-Length and "ok\n" (also /healthz); a request body, sized or
//                 chunked (extensions allowed), is read and its length is sent back in
//                 X-Body-Length
//
// Malformed input closes the connection. Only loopback addresses are bound.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define IN_CAP 65536

struct conn {
  int fd;
  size_t in_len;
  char in[IN_CAP];
  const char *out;  // pending answer bytes (static or in ok_buf)
  size_t out_len;
  int want_out;     // registered for EPOLLOUT
  char ok_buf[160];
  // request body state
  int in_body;      // 0 head, 1 sized body, 2 chunk line, 3 chunk data, 4 chunk data CRLF, 5 trailers
  size_t remaining; // bytes left in the sized body or the current chunk
  size_t body_len;
  int kind;         // which answer once the request is complete
};

enum { ANSWER_OK, ANSWER_CANONICAL, ANSWER_EXT, ANSWER_CL };

static char *answer_canonical, *answer_ext, *answer_cl;
static size_t answer_canonical_len, answer_ext_len, answer_cl_len;
static const char answer_ok_fmt[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Body-Length: %zu\r\nContent-Length: 3\r\n\r\nok\n";

static char *build_answer(int mode, int chunks, size_t size, size_t *len) {
  size_t cap = 256 + (size_t)chunks * (size + 64), n = 0;
  char *b = malloc(cap);
  if (!b) exit(1);
  if (mode == ANSWER_CL) {
    n += sprintf(b + n, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
                 (size_t)chunks * size);
  } else {
    n += sprintf(b + n, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n");
  }
  for (int c = 0; c < chunks; c++) {
    if (mode == ANSWER_CANONICAL) n += sprintf(b + n, "%zx\r\n", size);
    if (mode == ANSWER_EXT) n += sprintf(b + n, "00%zX;ext=%d\r\n", size, c);
    for (size_t i = 0; i < size; i++) b[n++] = (char)('a' + (c + i) % 26);
    if (mode != ANSWER_CL) { b[n++] = '\r'; b[n++] = '\n'; }
  }
  if (mode == ANSWER_CANONICAL) n += sprintf(b + n, "0\r\n\r\n");
  if (mode == ANSWER_EXT) n += sprintf(b + n, "000;last=yes\r\n\r\n");
  *len = n;
  return b;
}

static void conn_close(int ep, struct conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c);
}

// Header value of NAME in the head [p, end), or NULL. Case-insensitive name match.
static const char *header(const char *p, const char *end, const char *name, size_t *vlen) {
  size_t nl = strlen(name);
  while (p < end) {
    const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
    if (!eol) eol = end;
    if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
      const char *v = p + nl + 1;
      while (v < eol && (*v == ' ' || *v == '\t')) v++;
      *vlen = (size_t)(eol - v);
      return v;
    }
    p = eol + 2;
  }
  return NULL;
}

static void queue_answer(struct conn *c) {
  switch (c->kind) {
  case ANSWER_CANONICAL: c->out = answer_canonical; c->out_len = answer_canonical_len; break;
  case ANSWER_EXT: c->out = answer_ext; c->out_len = answer_ext_len; break;
  case ANSWER_CL: c->out = answer_cl; c->out_len = answer_cl_len; break;
  default:
    c->out_len = (size_t)snprintf(c->ok_buf, sizeof c->ok_buf, answer_ok_fmt, c->body_len);
    c->out = c->ok_buf;
  }
}

// Consumes what it can of c->in. Returns -1 on malformed input, 1 when an answer is queued,
// 0 when more input is needed.
static int parse(struct conn *c, size_t *used) {
  char *p = c->in, *end = c->in + c->in_len;
  for (;;) {
    if (c->in_body == 0) {
      char *he = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
      if (!he) break;
      char *sp = memchr(p, ' ', (size_t)(he - p));
      if (!sp) return -1;
      char *path = sp + 1, *pe = memchr(path, ' ', (size_t)(he - path));
      if (!pe) return -1;
      size_t plen = (size_t)(pe - path);
      c->kind = ANSWER_OK;
      if (plen == 10 && memcmp(path, "/canonical", 10) == 0) c->kind = ANSWER_CANONICAL;
      if (plen == 4 && memcmp(path, "/ext", 4) == 0) c->kind = ANSWER_EXT;
      if (plen == 3 && memcmp(path, "/cl", 3) == 0) c->kind = ANSWER_CL;
      size_t vlen;
      const char *hs = memmem(p, (size_t)(he - p), "\r\n", 2) + 2;
      const char *te = header(hs, he + 2, "Transfer-Encoding", &vlen);
      const char *cl = header(hs, he + 2, "Content-Length", &vlen);
      c->body_len = 0;
      p = he + 4;
      if (te) {
        c->in_body = 2;
      } else if (cl) {
        c->remaining = strtoull(cl, NULL, 10);
        c->in_body = c->remaining ? 1 : 0;
      }
      if (c->in_body == 0) { *used = (size_t)(p - c->in); queue_answer(c); return 1; }
    } else if (c->in_body == 1 || c->in_body == 3) {
      size_t n = (size_t)(end - p) < c->remaining ? (size_t)(end - p) : c->remaining;
      p += n;
      c->remaining -= n;
      c->body_len += n;
      if (c->remaining) break;
      if (c->in_body == 1) { c->in_body = 0; *used = (size_t)(p - c->in); queue_answer(c); return 1; }
      c->in_body = 4;
    } else if (c->in_body == 4) {
      if (end - p < 2) break;
      if (p[0] != '\r' || p[1] != '\n') return -1;
      p += 2;
      c->in_body = 2;
    } else if (c->in_body == 2) {
      char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
      if (!eol) break;
      char *q;
      unsigned long long size = strtoull(p, &q, 16);
      if (q == p) return -1;
      p = eol + 2;
      if (size == 0) { c->in_body = 5; continue; }
      c->remaining = size;
      c->in_body = 3;
    } else { // trailers, up to the empty line
      char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
      if (!eol) break;
      int empty = eol == p;
      p = eol + 2;
      if (empty) { c->in_body = 0; *used = (size_t)(p - c->in); queue_answer(c); return 1; }
    }
  }
  *used = (size_t)(p - c->in);
  return 0;
}

// Writes pending output; returns -1 on error, 0 when some is left, 1 when all is written.
static int flush_out(struct conn *c) {
  while (c->out_len) {
    ssize_t w = write(c->fd, c->out, c->out_len);
    if (w < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    c->out += w;
    c->out_len -= (size_t)w;
  }
  return 1;
}

// Reads and answers until the socket would block; returns -1 when the connection should close.
static int serve(int ep, struct conn *c) {
  for (;;) {
    if (c->out_len) {
      int f = flush_out(c);
      if (f < 0) return -1;
      if (f != !c->want_out) { // switch between waiting to read and waiting to write
        c->want_out = !f;
        struct epoll_event ev = {.events = f ? EPOLLIN : EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
      }
      if (!f) return 0;
    }
    size_t used = 0;
    int r = parse(c, &used);
    if (r < 0) return -1;
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    if (r == 1) continue;
    if (c->in_len == IN_CAP) return -1;
    ssize_t n = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
    if (n == 0) return -1;
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    c->in_len += (size_t)n;
  }
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s CHUNKS CHUNK_SIZE PORT...\n", argv[0]);
    return 2;
  }
  int chunks = atoi(argv[1]);
  size_t size = strtoul(argv[2], NULL, 10);
  if (chunks <= 0 || size == 0) return 2;
  signal(SIGPIPE, SIG_IGN);
  answer_canonical = build_answer(ANSWER_CANONICAL, chunks, size, &answer_canonical_len);
  answer_ext = build_answer(ANSWER_EXT, chunks, size, &answer_ext_len);
  answer_cl = build_answer(ANSWER_CL, chunks, size, &answer_cl_len);

  int ep = epoll_create1(0);
  int nl = argc - 3;
  int *listeners = calloc((size_t)nl, sizeof(int));
  for (int i = 0; i < nl; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3 + i]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 1024)) {
      perror("bind/listen");
      return 1;
    }
    listeners[i] = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listeners[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  fprintf(stderr, "chunked_backend: %d chunks of %zu bytes on %d ports\n", chunks, size, nl);

  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return 1;
    for (int i = 0; i < n; i++) {
      void *ptr = evs[i].data.ptr;
      if (ptr >= (void *)listeners && ptr < (void *)(listeners + nl)) {
        int lfd = *(int *)ptr, fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct conn *c = calloc(1, sizeof *c);
          if (!c) return 1;
          c->fd = fd;
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        continue;
      }
      struct conn *c = ptr;
      if (serve(ep, c) < 0) conn_close(ep, c);
    }
  }
}
