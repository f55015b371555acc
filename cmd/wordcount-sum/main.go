// Command wordcount-sum is the stateful sum step of the word count example as a Millrace
// function. Usage: wordcount-sum --socket /var/run/millrace/function.sock
package main

import (
	"github.com/millrace-dev/millrace/executor-runtime/examples/wordcount"
	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

func main() { sdk.Main(wordcount.Sum()) }
