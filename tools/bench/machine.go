package bench

import (
	"bufio"
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// Machine is what the benchmark ran on and with.
type Machine struct {
	CPU    string
	Cores  int
	Memory int64 // bytes
	Kernel string
	Go     string
	// Versions of what was measured.
	KubeAPIServer, Trueup, Kubectl, FluxSSA string
}

// machine describes this machine and the programs being measured.
func (b *bench) machine(ctx context.Context) (Machine, error) {
	m := Machine{CPU: cpuModel(), Cores: runtime.NumCPU(), Memory: memTotal(), Go: runtime.Version(), FluxSSA: moduleVersion("github.com/fluxcd/pkg/ssa")}
	if release, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(release))
	}
	v, err := b.admin.Discovery().ServerVersion()
	if err != nil {
		return m, err
	}
	m.KubeAPIServer = v.GitVersion
	home := b.work
	out, err := command(ctx, home, b.opts.Trueup, "version")
	if err != nil {
		return m, err
	}
	m.Trueup = firstLine(out)
	out, err = command(ctx, home, b.kubectl.bin, "version", "--client")
	if err != nil {
		return m, err
	}
	m.Kubectl = strings.TrimPrefix(firstLine(out), "Client Version: ")
	return m, nil
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if key, value, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(key) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown"
}

// memTotal is MemTotal of /proc/meminfo in bytes.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if value, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// moduleVersion is the version of a module this binary was built with.
func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range info.Deps {
		if d.Path == path {
			if d.Replace != nil {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return "unknown"
}
