// Copyright (c) vault-plugin-secrets-github-app contributors
// SPDX-License-Identifier: MPL-2.0

package fakegithub

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// GitHub's list defaults: 30 per page, at most 100.
const (
	defaultPerPage = 30
	maxPerPage     = 100
	maxPage        = 1 << 30 // keeps (page-1)*per_page far from overflowing
)

type pageRequest struct {
	perPage int
	page    int
}

// parsePage reads per_page and page the lenient way GitHub does: junk means the default,
// per_page above 100 means 100.
func parsePage(q url.Values) pageRequest {
	p := pageRequest{perPage: defaultPerPage, page: 1}
	if n, err := strconv.Atoi(q.Get("per_page")); err == nil && n > 0 {
		p.perPage = min(n, maxPerPage)
	}
	if n, err := strconv.Atoi(q.Get("page")); err == nil && n > 0 {
		p.page = min(n, maxPage)
	}
	return p
}

// bounds gives the slice [lo:hi] of total items on this page.
func (p pageRequest) bounds(total int) (lo, hi int) {
	lo = min((p.page-1)*p.perPage, total)
	hi = min(lo+p.perPage, total)
	return lo, hi
}

// setLinkHeader sets GitHub's Link header: absolute URLs in the order prev, next, last, first,
// and no header at all when everything fits on one page.
func (c *call) setLinkHeader(p pageRequest, total int) {
	last := max((total+p.perPage-1)/p.perPage, 1)
	if last == 1 && p.page == 1 {
		return
	}
	var rels []string
	add := func(page int, rel string) {
		u := c.links.api + c.path + "?" + withPage(c.r.URL.RawQuery, page)
		rels = append(rels, fmt.Sprintf("<%s>; rel=%q", u, rel))
	}
	if p.page > 1 {
		add(p.page-1, "prev")
	}
	if p.page < last {
		add(p.page+1, "next")
		add(last, "last")
	}
	if p.page > 1 {
		add(1, "first")
	}
	c.w.Header().Set("Link", strings.Join(rels, ", "))
}

// withPage sets page in a raw query and keeps the other parameters in their order,
// as GitHub's links do ("per_page=100&page=2").
func withPage(rawQuery string, page int) string {
	var parts []string
	found := false
	for _, kv := range strings.Split(rawQuery, "&") {
		if kv == "" {
			continue
		}
		if k, _, _ := strings.Cut(kv, "="); k == "page" {
			if !found {
				parts = append(parts, "page="+strconv.Itoa(page))
				found = true
			}
			continue
		}
		parts = append(parts, kv)
	}
	if !found {
		parts = append(parts, "page="+strconv.Itoa(page))
	}
	return strings.Join(parts, "&")
}
