// Sharpeye ingests the cameras and sensors of a governance centre and turns
// what they see into cases: see README.md.
package main

import (
	"os"

	"sharpeye/deploy/node"
)

func main() {
	os.Exit(node.Main(os.Args[1:], os.Stdout, os.Stderr, os.Environ()))
}
