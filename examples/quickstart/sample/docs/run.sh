#!/bin/sh
echo "an executable file: its mode is kept"
