// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It is 100 on every Linux that Go supports
// without cgo, and reading it with sysconf would need cgo.
const clockTicks = 100

// findPluginPID returns the PID of the live process whose executable is bin, preferring a child of parent (Vault)
// when parent is positive: Vault also runs a plugin binary briefly when it is registered, and a plugin that crashed
// is restarted under a new PID, so the PID is looked up afresh for every phase.
func findPluginPID(bin string, parent int) (int, error) {
	want, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return 0, fmt.Errorf("plugin binary %s: %w", bin, err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	best := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || strings.TrimSuffix(exe, " (deleted)") != want {
			continue
		}
		if parent > 0 {
			if pp, err := parentPID(pid); err == nil && pp == parent {
				return pid, nil
			}
		}
		best = max(best, pid)
	}
	if best == 0 {
		return 0, fmt.Errorf("no running process has %s as its executable", want)
	}
	return best, nil
}

// statFields returns the fields of /proc/PID/stat after the command name, which may itself hold spaces.
func statFields(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strings.Fields(string(data[i+1:])), nil
}

func parentPID(pid int) (int, error) {
	f, err := statFields(pid)
	if err != nil || len(f) < 2 {
		return 0, fmt.Errorf("reading the parent of %d: %v", pid, err)
	}
	return strconv.Atoi(f[1])
}

// cpuTime is the user plus system CPU time a process has used so far.
func cpuTime(pid int) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	// After the command name: state(0) ppid(1) ... utime(11) stime(12).
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad CPU times", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// machineBusy is the CPU time all cores spent on anything but idling and waiting for I/O, from /proc/stat.
func machineBusy() (time.Duration, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, fmt.Errorf("/proc/stat is empty")
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 6 || fields[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line")
	}
	var busy int64
	for i, v := range fields[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, err
		}
		// user nice system idle iowait irq softirq steal guest guest_nice: skip idle and iowait, and guest time,
		// which user time already includes.
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// memKB reads a field such as VmRSS or VmHWM from /proc/PID/status, in kB.
func memKB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// cpuMeter measures the CPU share of a set of named processes over an interval, as a percentage of the whole
// machine (all cores), so that the shares of Vault, the plugins, the emulator and the load generator add up with
// "other" to the machine's total.
type cpuMeter struct {
	pids  map[string]int
	start map[string]time.Duration
	busy  time.Duration
	t0    time.Time
}

func startCPU(pids map[string]int) *cpuMeter {
	m := &cpuMeter{pids: pids, start: map[string]time.Duration{}, t0: time.Now()}
	for name, pid := range pids {
		if pid > 0 {
			if d, err := cpuTime(pid); err == nil {
				m.start[name] = d
			}
		}
	}
	m.busy, _ = machineBusy()
	return m
}

// stop returns each process's share and "machine" (all busy time) in percent of all cores.
func (m *cpuMeter) stop() map[string]float64 {
	wall := time.Since(m.t0)
	capacity := float64(wall) * float64(runtime.NumCPU())
	out := map[string]float64{}
	for name, pid := range m.pids {
		s, ok := m.start[name]
		if !ok {
			continue
		}
		if d, err := cpuTime(pid); err == nil {
			out[name] = round1(100 * float64(d-s) / capacity)
		}
	}
	if b, err := machineBusy(); err == nil && m.busy > 0 {
		out["machine"] = round1(100 * float64(b-m.busy) / capacity)
	}
	return out
}

// ticker calls sample at once and then every interval, on its own goroutine, until stop.
type ticker struct {
	stopc chan struct{}
	done  chan struct{}
}

func startTicker(every time.Duration, sample func()) *ticker {
	tk := &ticker{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tk.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			sample()
			select {
			case <-tk.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return tk
}

// stop ends sampling; no sample runs after it returns.
func (tk *ticker) stop() {
	close(tk.stopc)
	<-tk.done
}

// rssSampler records the highest VmRSS of a process while it runs.
type rssSampler struct {
	tk   *ticker
	mu   sync.Mutex
	peak int64
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{}
	s.tk = startTicker(every, func() {
		if kb, err := memKB(pid, "VmRSS"); err == nil {
			s.mu.Lock()
			s.peak = max(s.peak, kb)
			s.mu.Unlock()
		}
	})
	return s
}

// stop ends sampling and returns the peak in MB.
func (s *rssSampler) stop() float64 {
	s.tk.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	return round1(float64(s.peak) / 1024)
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }
func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// tcpCounts counts the IPv4 TCP sockets of the machine that talk to port: client-side connections in ESTABLISHED
// state, and TIME_WAIT sockets on either side. A client whose connection pool is smaller than its concurrency
// opens and closes connections all the time, and the TIME_WAIT count shows it.
func tcpCounts(port int) (established, timeWait int) {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0, 0
	}
	hexPort := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		local, remote, state := f[1], f[2], f[3]
		switch {
		case state == "01" && strings.HasSuffix(remote, hexPort):
			established++
		case state == "06" && (strings.HasSuffix(remote, hexPort) || strings.HasSuffix(local, hexPort)):
			timeWait++
		}
	}
	return established, timeWait
}

// tcpSampler records the peaks of tcpCounts while it runs.
type tcpSampler struct {
	tk                 *ticker
	mu                 sync.Mutex
	maxEstab, maxTWait int
}

func sampleTCP(port int, every time.Duration) *tcpSampler {
	s := &tcpSampler{}
	s.tk = startTicker(every, func() {
		e, w := tcpCounts(port)
		s.mu.Lock()
		s.maxEstab, s.maxTWait = max(s.maxEstab, e), max(s.maxTWait, w)
		s.mu.Unlock()
	})
	return s
}

func (s *tcpSampler) stop() (maxEstablished, maxTimeWait int) {
	s.tk.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxEstab, s.maxTWait
}
