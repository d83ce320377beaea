/* A hostile workload for the reliability suite: a container's init that
 * passes itself off as a stuck `runc exec`.
 *
 * Run as the container's command, `/impostor/runc exec <container id>`, it
 * is a child of the containerd shim named "runc" with a runc exec argv.  It
 * makes its working directory a folder named like the real bundle
 * (IMPOSTOR_BUNDLE, the host path of some container's bundle) with a FIFO
 * called config.json in it, then blocks in write(2) on fd 2, a full pipe
 * whose reader is its own child.  A tool that opens that config.json with a
 * blocking open never returns; a tool that drains or kills it has acted on a
 * workload it had no business touching.
 *
 * Built static (the image is busybox only): cc -static -O2 -o runc impostor_runc.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

static void mkdirs(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof(buf))
        exit(2);
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    mkdir(buf, 0755);
}

int main(int argc, char **argv)
{
    const char *bundle = getenv("IMPOSTOR_BUNDLE");
    char fifo[4200];
    int p[2];
    static char block[65536];

    if (argc < 3 || !bundle || bundle[0] != '/')
        return 2;
    mkdirs(bundle);
    if (chdir(bundle) != 0)
        return 3;
    snprintf(fifo, sizeof(fifo), "%s/config.json", bundle);
    unlink(fifo);
    if (mkfifo(fifo, 0644) != 0)
        return 4;
    if (pipe(p) != 0)
        return 5;
    pid_t child = fork();
    if (child < 0)
        return 6;
    if (child == 0) {
        /* the reader: holds the read end and never reads */
        prctl(PR_SET_NAME, "reader", 0, 0, 0);
        close(p[1]);
        for (;;)
            pause();
    }
    close(p[0]);
    if (dup2(p[1], 2) < 0)
        return 7;
    close(p[1]);
    memset(block, 'x', sizeof(block));
    /* blocks for good once the pipe is full; EINTR is retried */
    for (;;) {
        ssize_t w = write(2, block, sizeof(block));
        if (w < 0 && errno != EINTR)
            break;
    }
    kill(child, SIGKILL);
    return 0;
}
