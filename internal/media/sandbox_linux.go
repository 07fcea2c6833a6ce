package media

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// pidsMax caps a child's tasks: ffmpeg's threads count, and a large
// machine runs a few hundred (x264, frame threads, filter threads).
const pidsMax = 1024

// cgroup2Magic is the statfs type of a cgroup v2 mount.
const cgroup2Magic = 0x63677270

// sandbox is how the native engine fences each child, beyond the
// arguments that pin its input (see media.go), with what the machine
// allows, worked out once by newSandbox:
//
//   - its own process group, killed as a whole on timeout and after exit,
//     and SIGKILL should this process die;
//   - an empty environment but for a private TMPDIR and HOME, removed
//     after the run;
//   - an empty network namespace (only a loopback device, down), so that
//     code run through a decoder bug cannot reach the network either;
//   - with cgroup v2, a cgroup of its own, entered at clone time, with
//     memory.max, no swap, pids.max against fork bombs, and cgroup.kill
//     for anything left behind; it is removed after the run;
//   - rlimits through prlimit(1): CPU time, no core dumps, and, without
//     a cgroup, the address space as a cruder memory cap.
type sandbox struct {
	prlimit string // "" when prlimit(1) is not installed
	memory  int64
	cpu     time.Duration // CPUTime rounded up to whole seconds
	tempDir string
	cg      *cgroupParent // nil: no cgroups
	cgWhy   string        // why not, when cg is nil
	net     netns
}

// netns is how a child gets an empty network namespace, if it can.
type netns struct {
	flags uintptr // clone flags; 0 when unsupported
	user  bool    // CLONE_NEWUSER too, with the caller's ids mapped
	why   string  // why not, when flags is 0
}

func newSandbox(cfg NativeConfig, ffmpeg string) (*sandbox, error) {
	s := &sandbox{memory: cfg.MemoryLimit, tempDir: cfg.TempDir}
	if cfg.CPUTime > 0 {
		s.cpu = time.Duration(math.Ceil(cfg.CPUTime.Seconds())) * time.Second
	}
	if s.tempDir == "" {
		s.tempDir = os.TempDir()
	}
	s.prlimit, _ = exec.LookPath("prlimit")
	s.net = detectNetns(ffmpeg)
	var err error
	switch cfg.Cgroup {
	case "off":
		s.cgWhy = "turned off"
		return s, nil
	case "", "auto":
		s.cg, err = autoCgroup()
	default:
		s.cg, err = namedCgroup(cfg.Cgroup)
	}
	if err == nil {
		err = s.tryCgroup(ffmpeg)
	}
	if err != nil {
		if cfg.Cgroup != "" && cfg.Cgroup != "auto" {
			return nil, fmt.Errorf("media: cgroup %s: %w", cfg.Cgroup, err)
		}
		s.cg, s.cgWhy = nil, err.Error()
	}
	return s, nil
}

// tryCgroup starts ffmpeg -version in a child cgroup, as every run will.
func (s *sandbox) tryCgroup(ffmpeg string) error {
	c, err := s.cg.newRun(s.memory)
	if err != nil {
		return err
	}
	cmd := exec.Command(ffmpeg, "-version")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: c.fd}
	err = cmd.Run()
	c.close()
	if err != nil {
		return fmt.Errorf("cannot start a process in a cgroup: %w", err)
	}
	return nil
}

func (s *sandbox) memoryCapped() bool {
	return s.memory > 0 && (s.cg != nil || s.prlimit != "")
}

// asLimit reports whether the memory cap is an address-space rlimit.
func (s *sandbox) asLimit() bool {
	return s.memory > 0 && s.cg == nil && s.prlimit != ""
}

// cpuLimit is the CPU time a child may use; 0 when none is applied.
func (s *sandbox) cpuLimit() time.Duration {
	if s.prlimit == "" {
		return 0
	}
	return s.cpu
}

func (s *sandbox) String() string {
	var parts []string
	if s.cg != nil {
		limits := fmt.Sprintf("pids.max %d", pidsMax)
		if s.memory > 0 {
			limits = fmt.Sprintf("memory.max %s, swap 0, ", memLimitString(s.memory)) + limits
		}
		parts = append(parts, fmt.Sprintf("cgroup v2 per run under %s (%s)", s.cg.dir, limits))
	} else {
		parts = append(parts, "no cgroup ("+s.cgWhy+")")
	}
	if s.prlimit != "" {
		var rl []string
		if s.asLimit() {
			rl = append(rl, "address space "+memLimitString(s.memory))
		}
		if s.cpu > 0 {
			rl = append(rl, "CPU time "+cpuLimitString(s.cpu))
		}
		rl = append(rl, "no core dumps")
		parts = append(parts, "rlimits via prlimit ("+strings.Join(rl, ", ")+")")
	} else {
		parts = append(parts, "no rlimits (prlimit not installed: apt-get install util-linux)")
	}
	if s.net.flags != 0 {
		parts = append(parts, "empty network namespace")
	} else {
		parts = append(parts, "host network namespace ("+s.net.why+"); FFmpeg's protocol whitelist only")
	}
	parts = append(parts, "private TMPDIR under "+s.tempDir)
	return strings.Join(parts, "; ")
}

// wrap puts prlimit(1) in front of bin when it is installed.
func (s *sandbox) wrap(bin string, args []string) (string, []string) {
	if s.prlimit == "" {
		return bin, args
	}
	lim := []string{"--core=0"}
	if s.asLimit() {
		lim = append(lim, "--as="+strconv.FormatInt(s.memory, 10))
	}
	if s.cpu > 0 {
		// SIGXCPU at the soft limit, on which ffmpeg ends its run; SIGKILL
		// at the hard one should it not.
		soft := int64(s.cpu / time.Second)
		lim = append(lim, fmt.Sprintf("--cpu=%d:%d", soft, soft+5))
	}
	return s.prlimit, append(append(lim, "--", bin), args...)
}

// apply sets the namespace flags on attr.
func (n netns) apply(attr *syscall.SysProcAttr) {
	attr.Cloneflags |= n.flags
	if n.user {
		uid, gid := os.Getuid(), os.Getgid()
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
}

var (
	netnsOnce   sync.Once
	netnsResult netns
)

// detectNetns finds out, once per process, whether children can get a
// network namespace: directly (root, CAP_SYS_ADMIN), or inside a user
// namespace of their own (unprivileged user namespaces), or not at all
// (a container's seccomp profile, say).
func detectNetns(bin string) netns {
	netnsOnce.Do(func() {
		var errs []string
		for _, n := range []netns{{flags: syscall.CLONE_NEWNET}, {flags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET, user: true}} {
			cmd := exec.Command(bin, "-version")
			cmd.SysProcAttr = &syscall.SysProcAttr{}
			n.apply(cmd.SysProcAttr)
			// Only a failed clone says the namespace is not allowed.
			if err := cmd.Start(); err != nil {
				errs = append(errs, err.Error())
				continue
			}
			_ = cmd.Wait()
			netnsResult = n
			return
		}
		netnsResult = netns{why: "cannot create one: " + strings.Join(errs, "; ")}
	})
	return netnsResult
}

// run starts bin in its own process group, in dir ("": this process's
// working directory), with no stdin and an environment of only LC_ALL,
// TMPDIR and HOME, fenced as the sandbox allows; it kills the whole group
// when ctx ends and when bin exits.
func (n *Native) run(ctx context.Context, dir, bin string, args []string, stdout, stderr io.Writer) (runInfo, error) {
	var info runInfo
	s := n.sb
	tmp, err := os.MkdirTemp(s.tempDir, "sluice-ffmpeg-")
	if err != nil {
		return info, fmt.Errorf("media: private temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	name, args := s.wrap(bin, args)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = []string{"LC_ALL=C", "TMPDIR=" + tmp, "HOME=" + tmp}
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.Stderr = stderr
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	s.net.apply(attr)
	var cg *runCgroup
	if s.cg != nil {
		if cg, err = s.cg.newRun(s.memory); err != nil {
			return info, err
		}
		attr.UseCgroupFD, attr.CgroupFD = true, cg.fd
	}
	cmd.SysProcAttr = attr
	cmd.Cancel = func() error {
		if cg != nil {
			cg.kill()
		}
		// Negative pid: the whole process group, in case FFmpeg forked.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		if cg != nil {
			cg.close()
		}
		return info, err
	}
	// Whatever the child left running goes with it, as soon as it exits:
	// before Wait waits for the pipes such a process would hold open, and
	// while the child, not yet reaped, keeps its group's id from reuse.
	reaped := make(chan struct{})
	go func() {
		defer close(reaped)
		waitExited(cmd.Process.Pid)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if cg != nil {
			cg.kill()
		}
	}()
	err = cmd.Wait()
	<-reaped
	if ps := cmd.ProcessState; ps != nil {
		info.cpu = ps.UserTime() + ps.SystemTime()
	}
	if cg != nil {
		info.oom = cg.close()
		if cg.left {
			n.log.Warn("ffmpeg cgroup left behind", "cgroup", cg.dir)
		}
	}
	return info, err
}

// waitExited blocks until process pid has exited, leaving it for Wait
// to reap (waitid with WNOWAIT; ECHILD once Wait has reaped it).
func waitExited(pid int) {
	const pPID = 1
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info)), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno != syscall.EINTR {
			return
		}
	}
}

// cgroupParent is the cgroup v2 directory children get cgroups under.
type cgroupParent struct {
	dir          string
	memory, pids bool // controllers enabled for children
	seq          atomic.Uint64
}

// cgroup2Mount finds the cgroup v2 mount: its mount point and the
// hierarchy path it shows (not "/" where a container sees a subtree).
func cgroup2Mount() (mnt, root string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, fs := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(fs) < 1 || fs[0] != "cgroup2" {
			continue
		}
		// The first cgroup2 mount; /sys/fs/cgroup where it is one.
		if mnt == "" || fields[4] == "/sys/fs/cgroup" {
			mnt, root = fields[4], fields[3]
		}
	}
	if mnt == "" {
		return "", "", errors.New("cgroup v2 is not mounted")
	}
	return mnt, root, sc.Err()
}

// autoCgroup finds a cgroup for children under this process's own.
func autoCgroup() (*cgroupParent, error) {
	mnt, root, err := cgroup2Mount()
	if err != nil {
		return nil, err
	}
	own, err := ownCgroup()
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(root, own)
	if err != nil || strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("own cgroup %s is outside the cgroup v2 mount %s", own, mnt)
	}
	base := filepath.Join(mnt, rel)
	if err := needControllers(base); err != nil {
		if mnt != "/sys/fs/cgroup" {
			return nil, fmt.Errorf("hybrid hierarchy: the cgroup v2 at %s lacks the memory and pids controllers, which cgroup v1 holds", mnt)
		}
		return nil, err
	}
	if err := enableControllers(base); err != nil {
		if !errors.Is(err, syscall.EBUSY) {
			return nil, fmt.Errorf("cannot enable controllers in %s: %w", base, err)
		}
		// A cgroup with processes cannot hand controllers to children:
		// move this process to a leaf of its own, as systemd's delegation
		// rules ask, but only in a cgroup delegated to it and only when
		// it is alone there.
		if !delegated(base, own) {
			return nil, fmt.Errorf("cgroup %s is not delegated to Sluice (systemd: Delegate=yes) and holds its processes", base)
		}
		if err := moveToLeaf(base); err != nil {
			return nil, err
		}
	}
	p := filepath.Join(base, "sluice-ffmpeg")
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	if err := enableControllers(p); err != nil {
		return nil, fmt.Errorf("cannot enable controllers in %s: %w", p, err)
	}
	return &cgroupParent{dir: p, memory: true, pids: true}, nil
}

// namedCgroup checks a configured cgroup v2 directory.
func namedCgroup(dir string) (*cgroupParent, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return nil, err
	}
	if st.Type != cgroup2Magic {
		return nil, errors.New("not a cgroup v2 directory")
	}
	if err := needControllers(dir); err != nil {
		return nil, err
	}
	if err := enableControllers(dir); err != nil {
		if errors.Is(err, syscall.EBUSY) {
			return nil, errors.New("it holds processes; give Sluice an empty cgroup")
		}
		return nil, fmt.Errorf("cannot enable controllers: %w", err)
	}
	return &cgroupParent{dir: dir, memory: true, pids: true}, nil
}

// ownCgroup is this process's cgroup v2 path, from /proc/self/cgroup.
func ownCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("no cgroup v2 entry in /proc/self/cgroup")
}

// needControllers checks that dir may hand memory and pids to children.
func needControllers(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return err
	}
	have := strings.Fields(string(b))
	for _, c := range []string{"memory", "pids"} {
		if !slices.Contains(have, c) {
			return fmt.Errorf("the %s controller is not available in %s", c, dir)
		}
	}
	return nil
}

// enableControllers turns memory and pids on for dir's children.
func enableControllers(dir string) error {
	file := filepath.Join(dir, "cgroup.subtree_control")
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if on := strings.Fields(string(b)); slices.Contains(on, "memory") && slices.Contains(on, "pids") {
		return nil
	}
	return os.WriteFile(file, []byte("+memory +pids"), 0)
}

// delegated reports whether the cgroup at dir is this process's to
// split: systemd marks delegated cgroups with an extended attribute, and
// a container's runtime hands it the root of its cgroup namespace.
func delegated(dir, own string) bool {
	if own == "/" {
		return true
	}
	buf := make([]byte, 8)
	for _, attr := range []string{"trusted.delegate", "user.delegate"} {
		if n, err := syscall.Getxattr(dir, attr, buf); err == nil && string(buf[:n]) == "1" {
			return true
		}
	}
	return false
}

// moveToLeaf moves this process from base into base/sluice, when no other
// process is in base, and enables the controllers in base.
func moveToLeaf(base string) error {
	b, err := os.ReadFile(filepath.Join(base, "cgroup.procs"))
	if err != nil {
		return err
	}
	self := strconv.Itoa(os.Getpid())
	for _, p := range strings.Fields(string(b)) {
		if p != self {
			return fmt.Errorf("other processes share cgroup %s: run Sluice in a cgroup of its own (systemd Delegate=yes) or set the cgroup setting", base)
		}
	}
	leaf := filepath.Join(base, "sluice")
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(self), 0); err != nil {
		return fmt.Errorf("cannot move into %s: %w", leaf, err)
	}
	if err := enableControllers(base); err != nil {
		_ = os.WriteFile(filepath.Join(base, "cgroup.procs"), []byte(self), 0)
		return fmt.Errorf("cannot enable controllers in %s: %w", base, err)
	}
	return nil
}

// runCgroup is one child's cgroup.
type runCgroup struct {
	dir  string
	fd   int
	left bool // could not be removed
}

// newRun makes a cgroup for one child, with its limits set.
func (p *cgroupParent) newRun(memory int64) (*runCgroup, error) {
	dir := filepath.Join(p.dir, fmt.Sprintf("run-%d-%d", os.Getpid(), p.seq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("media: ffmpeg cgroup: %w", err)
	}
	c := &runCgroup{dir: dir, fd: -1}
	set := func(file, value string) error {
		return os.WriteFile(filepath.Join(dir, file), []byte(value), 0)
	}
	var err error
	if p.memory && memory > 0 {
		err = set("memory.max", strconv.FormatInt(memory, 10))
		// Optional: swap would stretch memory.max; group OOM kills take
		// the whole child, not one of its processes.
		_ = set("memory.swap.max", "0")
		_ = set("memory.oom.group", "1")
	}
	if err == nil && p.pids {
		err = set("pids.max", strconv.Itoa(pidsMax))
	}
	if err == nil {
		c.fd, err = syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("media: ffmpeg cgroup %s: %w", dir, err)
	}
	return c, nil
}

// kill ends every process in the cgroup.
func (c *runCgroup) kill() {
	if os.WriteFile(filepath.Join(c.dir, "cgroup.kill"), []byte("1"), 0) == nil {
		return
	}
	// Before Linux 5.14: one by one.
	b, _ := os.ReadFile(filepath.Join(c.dir, "cgroup.procs"))
	for _, p := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(p); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// close kills what is left in the cgroup and removes it; it reports
// whether the OOM killer struck in it.
func (c *runCgroup) close() (oom bool) {
	if c.fd >= 0 {
		syscall.Close(c.fd)
		c.fd = -1
	}
	if b, err := os.ReadFile(filepath.Join(c.dir, "memory.events")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok && v != "0" {
				oom = true
			}
		}
	}
	c.kill()
	// Killed tasks leave the cgroup asynchronously; rmdir fails with
	// EBUSY until they have.
	for i := 0; i < 200; i++ {
		err := syscall.Rmdir(c.dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return oom
		}
		if !errors.Is(err, syscall.EBUSY) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.left = true
	return oom
}
