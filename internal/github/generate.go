package github

//go:generate go run ../tools/genperms -out permissions_gen.go -specs ../ghcontract/openapi
