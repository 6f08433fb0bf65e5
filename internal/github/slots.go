// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package github

import (
	"context"
	"sync"
)

// class sorts calls into the two queues of slots.
type class int

const (
	classApp    class = iota // mints, lookups, listings: App-authenticated
	classRevoke              // revocations: authenticated by the token itself
)

func classOf(cl *call) class {
	if cl.token != "" {
		return classRevoke
	}
	return classApp
}

// slots is a counting semaphore whose waiters are served in arrival order within each class, the two classes taking
// turns when both wait: a storm of revocations cannot starve mints, nor the other way round.
type slots struct {
	mu       sync.Mutex
	capacity int
	inUse    int
	waiting  [2][]*waiter
	arrivals uint64
	last     class // the class served last, while both wait
	served   bool  // whether last is set
}

type waiter struct {
	ready   chan struct{}
	arrival uint64
	granted bool // set under slots.mu when the slot is handed over
}

// acquire takes a slot, waiting in line until one is free or ctx ends; waited reports whether it had to wait.
func (s *slots) acquire(ctx context.Context, c class) (waited bool, err error) {
	s.mu.Lock()
	if s.inUse < s.capacity && len(s.waiting[classApp])+len(s.waiting[classRevoke]) == 0 {
		s.inUse++
		s.mu.Unlock()
		return false, nil
	}
	s.arrivals++
	w := &waiter{ready: make(chan struct{}), arrival: s.arrivals}
	s.waiting[c] = append(s.waiting[c], w)
	s.mu.Unlock()

	select {
	case <-w.ready:
		return true, nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		if w.granted {
			// Handed over as the context ended: pass it on.
			s.inUse--
			s.grantLocked()
		} else {
			for i, o := range s.waiting[c] {
				if o == w {
					s.waiting[c] = append(s.waiting[c][:i], s.waiting[c][i+1:]...)
					break
				}
			}
		}
		return true, ctx.Err()
	}
}

func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inUse--
	s.grantLocked()
}

func (s *slots) setCapacity(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.capacity = n
	s.grantLocked()
}

func (s *slots) usage() (inUse, capacity int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inUse, s.capacity
}

// grantLocked hands free slots to waiters: the one that came first, except that while both classes wait they take
// turns.
func (s *slots) grantLocked() {
	for s.inUse < s.capacity {
		app, revoke := len(s.waiting[classApp]) > 0, len(s.waiting[classRevoke]) > 0
		var c class
		switch {
		case app && revoke && s.served:
			c = 1 - s.last
		case app && revoke:
			c = classRevoke
			if s.waiting[classApp][0].arrival < s.waiting[classRevoke][0].arrival {
				c = classApp
			}
		case app:
			c = classApp
		case revoke:
			c = classRevoke
		default:
			s.served = false
			return
		}
		w := s.waiting[c][0]
		s.waiting[c] = s.waiting[c][1:]
		s.last, s.served = c, true
		w.granted = true
		s.inUse++
		close(w.ready)
	}
}
