/*
 * Fault-injecting OCI runtime for the hangdoctor.runtime test harness.
 *
 * Every call is handed to the real runc with execv(), except `exec` for a
 * container that the harness has armed.  For those it reproduces the failure
 * the collection repairs:
 *
 *   runc exec (this process, parent)
 *     └─ runc init (child, re-executed as argv "runc init", comm runc:[2:INIT])
 *          joins the container's cgroups, writes a Go runtime crash dump that is
 *          larger than the pipe to fd 2 and exits 2.
 *
 * The parent waits on the init socket as runc exec does (read(2) on
 * _LIBCONTAINER_INITPIPE) and then reports "read init-p: connection reset by
 * peer" on its own stderr, which is the same pipe.  Because containerd-shim
 * reads an exec's stdio only after runc exec returns, the child blocks in
 * write(2) once the pipe is full, and the whole chain deadlocks.
 *
 * Arming: FAULT_DIR/armed/<container-id> holds "SIZE COUNT [PIPE_SIZE]".  Each
 * armed exec decrements COUNT and the file is removed at 0; COUNT -1 means
 * every exec.  PIPE_SIZE shrinks the stderr pipe first (F_SETPIPE_SZ), as the
 * kernel does to one page for a user past fs.pipe-user-pages-soft.
 * Records: FAULT_DIR/records/<child-pid>.dump holds the exact bytes the child
 * writes, <child-pid>.json says who wrote them, <parent-pid>.err the error line.
 *
 * Build: cc -O2 -DREAL_RUNC='"/usr/sbin/runc"' -DFAULT_DIR='"/tmp/x/fault"'
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef REAL_RUNC
#define REAL_RUNC "/usr/sbin/runc"
#endif
#ifndef FAULT_DIR
#define FAULT_DIR "/tmp/hangdoctor-harness/fault"
#endif

#define INIT_ENV "_HANGDOCTOR_FAULT_INIT"
#define PIPE_ENV "_LIBCONTAINER_INITPIPE"
#define EXEC_ERROR                                                             \
    "exec failed: container_linux.go:348: starting container process caused " \
    "\"read init-p: connection reset by peer\"\n"

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_file(const char *path, const char *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int rc = write_all(fd, buf, len);
    close(fd);
    return rc;
}

/* A Go crash dump as runc init prints it when pthread_create fails under
 * cgroup pressure: the header, a register dump, then goroutine stacks until
 * `size` bytes.  Deterministic, but no two lines are alike, so a lost or
 * reordered chunk changes the sha256. */
static char *make_dump(size_t size)
{
    static const char *head =
        "runtime/cgo: pthread_create failed: Resource temporarily unavailable\n"
        "SIGABRT: abort\n"
        "PC=0x7f3c2a2f5277 m=0 sigcode=18446744073709551610\n"
        "\n"
        "goroutine 0 [idle]:\n"
        "runtime: unknown pc 0x7f3c2a2f5277\n"
        "stack: frame={sp:0x7ffd3b2c1f28, fp:0x0} stack=[0x7ffd3aaf3a40,0x7ffd3b2c2a70)\n"
        "\n"
        "rax    0x0\nrbx    0x7f3c2a6a7868\nrcx    0xffffffffffffffff\n"
        "rdx    0x6\nrdi    0x5f\nrsi    0x5f\nrbp    0x55f8c2e4b0b5\n"
        "rsp    0x7ffd3b2c1f28\nr8     0xa\nr9     0x7f3c2ae0a740\n"
        "r10    0x8\nr11    0x206\nr12    0x55f8c4a2d6e0\nr13    0x0\n"
        "r14    0x55f8c2cf1e0c\nr15    0x0\nrip    0x7f3c2a2f5277\n"
        "rflags 0x206\ncs     0x33\nfs     0x0\ngs     0x0\n"
        "\n"
        "goroutine 1 [running, locked to thread]:\n"
        "runtime.systemstack_switch()\n"
        "\t/usr/local/go/src/runtime/asm_amd64.s:311 fp=0xc000040d98 sp=0xc000040d90 pc=0x55f8c2a4e640\n";
    size_t cap = size + 512;
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    size_t off = 0;
    size_t hl = strlen(head);
    memcpy(buf, head, hl < size ? hl : size);
    off = hl < size ? hl : size;
    unsigned long n = 2;
    while (off < size) {
        char line[320];
        int len = snprintf(
            line, sizeof(line),
            "\ngoroutine %lu [chan receive, %lu minutes]:\n"
            "github.com/opencontainers/runc/libcontainer.(*linuxStandardInit).Init(0xc0000%05lx, 0x0, 0x0)\n"
            "\t/go/src/github.com/opencontainers/runc/libcontainer/standard_init_linux.go:%lu +0x%lx\n",
            n, n % 60, (n * 2654435761UL) & 0xfffffUL, 100 + n % 97, (n * 40503UL) & 0xfffUL);
        size_t take = (size_t)len < size - off ? (size_t)len : size - off;
        memcpy(buf + off, line, take);
        off += take;
        n++;
    }
    return buf;
}

/* Put `pid` into every cgroup of the container's init process, as runc init
 * joins them: in the real failure the crash happens inside the container's
 * memory cgroup, and that is what the kernel's OOM lines name. */
static void join_container_cgroups(const char *runc_root, const char *cid, pid_t pid)
{
    char path[PATH_MAX], buf[8192];
    if (runc_root == NULL)
        return;
    snprintf(path, sizeof(path), "%s/%s/state.json", runc_root, cid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    char *p = strstr(buf, "\"init_process_pid\":");
    if (p == NULL)
        return;
    long init_pid = strtol(p + strlen("\"init_process_pid\":"), NULL, 10);
    if (init_pid <= 0)
        return;
    snprintf(path, sizeof(path), "/proc/%ld/cgroup", init_pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return;
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        /* cgroup v1: "4:memory:/docker/<id>"; v2: "0::/path" */
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL)
            continue;
        *c2 = '\0';
        char *ctrl = c1 + 1;
        char *cg = c2 + 1;
        cg[strcspn(cg, "\n")] = '\0';
        if (strncmp(ctrl, "name=", 5) == 0)
            ctrl += 5;
        char *comma = strchr(ctrl, ',');
        if (comma)
            *comma = '\0'; /* cpu,cpuacct is mounted as cpu */
        if (*ctrl == '\0')
            snprintf(path, sizeof(path), "/sys/fs/cgroup/unified%s/cgroup.procs", cg);
        else
            snprintf(path, sizeof(path), "/sys/fs/cgroup/%s%s/cgroup.procs", ctrl, cg);
        int cfd = open(path, O_WRONLY | O_CLOEXEC);
        if (cfd < 0)
            continue;
        char pidbuf[32];
        int len = snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);
        if (write(cfd, pidbuf, (size_t)len) < 0) {
            /* best effort: a controller we may not join is not the point */
        }
        close(cfd);
    }
    fclose(f);
}

/* The child: "runc init" that crashes.  Runs after re-exec, so its argv is
 * exactly "runc init" like the real one. */
static int fault_init(const char *spec)
{
    prctl(PR_SET_NAME, "runc:[2:INIT]", 0, 0, 0);
    char *rest = NULL;
    size_t size = (size_t)strtoul(spec, &rest, 10);
    long pipe_size = (rest && *rest == ':') ? strtol(rest + 1, &rest, 10) : 0;
    if (pipe_size > 0)
        fcntl(2, F_SETPIPE_SZ, (int)pipe_size);
    char *dump = make_dump(size);
    if (dump == NULL)
        return 3;
    char path[PATH_MAX], meta[PATH_MAX + 256];
    snprintf(path, sizeof(path), "%s/records/%d.dump", FAULT_DIR, (int)getpid());
    write_file(path, dump, size);
    const char *cid = (rest && *rest == ':') ? rest : NULL;
    int mlen = snprintf(meta, sizeof(meta),
                        "{\"pid\": %d, \"ppid\": %d, \"length\": %zu, \"container_id\": \"%s\", \"time\": %ld}\n",
                        (int)getpid(), (int)getppid(), size, cid ? cid + 1 : "", (long)time(NULL));
    snprintf(path, sizeof(path), "%s/records/%d.json", FAULT_DIR, (int)getpid());
    write_file(path, meta, (size_t)mlen);
    /* Blocks here once the pipe is full: the deadlock. */
    write_all(2, dump, size);
    return 2;
}

/* Returns the payload size for an armed container, or 0 to pass through. */
static size_t take_arm(const char *cid, long *pipe_size)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/armed/%s", FAULT_DIR, cid);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return 0;
    flock(fd, LOCK_EX);
    char buf[64] = {0};
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    unsigned long size = 0;
    long count = 1;
    *pipe_size = 0;
    if (n > 0)
        sscanf(buf, "%lu %ld %ld", &size, &count, pipe_size);
    if (count > 0)
        count--;
    if (count == 0) {
        unlink(path);
    } else {
        int len = snprintf(buf, sizeof(buf), "%lu %ld %ld\n", size, count, *pipe_size);
        if (ftruncate(fd, 0) == 0 && pwrite(fd, buf, (size_t)len, 0) < 0) {
            /* the next exec passes through: harmless */
        }
    }
    flock(fd, LOCK_UN);
    close(fd);
    return (size_t)size;
}

static void log_json_error(const char *log_path)
{
    if (log_path == NULL)
        return;
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    char line[512], stamp[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
    int len = snprintf(line, sizeof(line),
                       "{\"level\":\"error\",\"msg\":\"exec failed: container_linux.go:348: starting "
                       "container process caused: read init-p: connection reset by peer\",\"time\":\"%s\"}\n",
                       stamp);
    write_all(fd, line, (size_t)len);
    close(fd);
}

int main(int argc, char **argv)
{
    const char *init_spec = getenv(INIT_ENV);
    if (init_spec != NULL && argc >= 2 && strcmp(argv[1], "init") == 0)
        return fault_init(init_spec);

    /* Find the subcommand after runc's global options. */
    const char *log_path = NULL, *runc_root = NULL;
    int cmd = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            cmd = i;
            break;
        }
        const char *name = a[1] == '-' ? a + 2 : a + 1;
        if (strchr(name, '='))
            continue;
        if (strcmp(name, "log") == 0 || strcmp(name, "root") == 0 || strcmp(name, "log-format") == 0 ||
            strcmp(name, "criu") == 0 || strcmp(name, "rootless") == 0) {
            if (i + 1 < argc) {
                if (strcmp(name, "log") == 0)
                    log_path = argv[i + 1];
                if (strcmp(name, "root") == 0)
                    runc_root = argv[i + 1];
            }
            i++;
        }
    }
    size_t size = 0;
    long pipe_size = 0;
    const char *cid = argv[argc - 1];
    /* A held start: `runc start` waits while FAULT_DIR/hold-start/<id> exists,
     * so the created container's runc init waits opening exec.fifo. */
    if (cmd > 0 && strcmp(argv[cmd], "start") == 0 && argc - 1 > cmd) {
        char hold[PATH_MAX];
        snprintf(hold, sizeof(hold), "%s/hold-start/%s", FAULT_DIR, cid);
        while (access(hold, F_OK) == 0)
            usleep(100000);
    }
    if (cmd > 0 && strcmp(argv[cmd], "exec") == 0 && argc - 1 > cmd)
        size = take_arm(cid, &pipe_size);
    if (size == 0) {
        execv(REAL_RUNC, argv);
        perror("execv " REAL_RUNC);
        return 127;
    }

    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) < 0)
        return 1;
    pid_t child = fork();
    if (child < 0)
        return 1;
    if (child == 0) {
        close(sp[0]);
        char env_init[PATH_MAX], env_pipe[64];
        snprintf(env_init, sizeof(env_init), INIT_ENV "=%zu:%ld:%s", size, pipe_size, cid);
        snprintf(env_pipe, sizeof(env_pipe), PIPE_ENV "=%d", sp[1]);
        char *envp[] = {env_init, env_pipe, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
        char *cargv[] = {"runc", "init", NULL};
        execve("/proc/self/exe", cargv, envp);
        _exit(127);
    }
    close(sp[1]);
    join_container_cgroups(runc_root, cid, child);
    /* Like runc exec: wait on the init pipe, which ends when init dies. */
    char b;
    while (read(sp[0], &b, 1) < 0 && errno == EINTR)
        ;
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/records/%d.err", FAULT_DIR, (int)getpid());
    write_file(path, EXEC_ERROR, strlen(EXEC_ERROR));
    log_json_error(log_path);
    /* The same pipe: blocks again if nobody emptied it. */
    write_all(2, EXEC_ERROR, strlen(EXEC_ERROR));
    return 1;
}
