"""The ONNX fast path: conversion, the equivalence check and its record, sessions, preloading."""
