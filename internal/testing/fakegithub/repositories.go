// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"fmt"
	"slices"
	"strings"
)

// AddRepository adds a repository to an installation, as creating one in an account whose installation reaches
// all repositories does. An ID of 0 gets a free one (or the repository's, when another installation of the account
// has it). It returns the repository as stored.
func (s *Server) AddRepository(installationID int64, repo Repository) (Repository, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.st.installations[installationID]
	if !ok {
		return repo, fmt.Errorf("fakegithub: installation %d does not exist", installationID)
	}
	if !repoNamePattern.MatchString(repo.Name) || repo.Name == "." || repo.Name == ".." || repo.ID < 0 {
		return repo, fmt.Errorf("fakegithub: repository %q (id %d) is not valid", repo.Name, repo.ID)
	}
	if slices.ContainsFunc(in.Repositories, func(r Repository) bool { return strings.EqualFold(r.Name, repo.Name) }) {
		return repo, fmt.Errorf("fakegithub: installation %d already has repository %q", installationID, repo.Name)
	}
	full := strings.ToLower(in.Account) + "/" + strings.ToLower(repo.Name)
	known, exists := s.st.repoByName[full]
	switch {
	case repo.ID == 0 && exists:
		repo.ID = known
	case repo.ID == 0:
		repo.ID = s.st.freeRepoID(nil)
	case exists && known != repo.ID:
		return repo, fmt.Errorf("fakegithub: repository %s has id %d, not %d", full, known, repo.ID)
	}
	if other, used := s.st.repoByID[repo.ID]; used && other != full {
		return repo, fmt.Errorf("fakegithub: repository id %d already names %s", repo.ID, other)
	}
	s.st.repoByID[repo.ID], s.st.repoByName[full] = full, repo.ID
	in.Repositories = append(slices.Clone(in.Repositories), repo)
	return repo, nil
}

// RemoveRepository takes a repository, by name in any case, out of an installation's reach, as deleting it or
// removing it from the installation's selection does. Tokens minted for it no longer reach it.
func (s *Server) RemoveRepository(installationID int64, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.st.installations[installationID]
	if !ok {
		return fmt.Errorf("fakegithub: installation %d does not exist", installationID)
	}
	i := slices.IndexFunc(in.Repositories, func(r Repository) bool { return strings.EqualFold(r.Name, name) })
	if i < 0 {
		return fmt.Errorf("fakegithub: installation %d has no repository %q", installationID, name)
	}
	in.Repositories = slices.Delete(slices.Clone(in.Repositories), i, i+1)
	return nil
}
